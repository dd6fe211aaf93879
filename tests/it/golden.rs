//! Golden tests: every job on the generated data set (fixed seed) against checked-in
//! expected output under `tests/golden/`, and the idempotent-rerun property. Regenerate the
//! expectations with `UPDATE_GOLDEN=1 cargo test --test it golden` after an intended change,
//! and review the diff.

use chrono::NaiveDate;
use quickchat_etl::query::DateRange;

use crate::support::{TestLake, assert_golden, assert_same_tables, golden_spec, registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_matches_its_golden_output_and_reruns_change_nothing() {
    let registry = registry();
    let lake = TestLake::local();
    lake.generate(&golden_spec()).await;
    lake.run_ok(&registry, "full-pipeline", DateRange::All).await;
    let first = lake.dump_all().await;
    assert_golden(&first);

    // The Parquet export holds exactly the gold table, partitioned by day.
    assert_eq!(
        read_export(&lake).await,
        first["gold.ml_features"],
        "the Parquet export differs from gold.ml_features"
    );

    // Running everything again, in full or for one day, twice, leaves every table as it was.
    lake.run_ok(&registry, "full-pipeline", DateRange::All).await;
    assert_same_tables(&first, &lake.dump_all().await, "a second full run");
    let day = NaiveDate::from_ymd_opt(2024, 3, 7).unwrap();
    for _ in 0..2 {
        lake.run_ok(&registry, "full-pipeline", DateRange::Days { start: day, end: day })
            .await;
        assert_same_tables(&first, &lake.dump_all().await, &format!("a rerun for {day}"));
    }
    let runs = lake
        .query("SELECT job, count(*) AS runs FROM meta.run_log GROUP BY job")
        .await;
    assert!(
        runs.contains("bronze-messages|4"),
        "every run is in the run log:\n{runs}"
    );
}

/// The Parquet export read back with its Hive partition column, columns in the gold order.
async fn read_export(lake: &TestLake) -> String {
    use arrow::datatypes::DataType;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let ctx = SessionContext::new();
    let options =
        ParquetReadOptions::default().table_partition_cols(vec![("as_of_date".to_string(), DataType::Date32)]);
    ctx.register_parquet("export", &format!("{}/exports/ml_features/", lake.root_arg), options)
        .await
        .unwrap();
    let gold_columns = lake.query("SELECT * FROM gold.ml_features LIMIT 1").await;
    let columns = gold_columns.lines().next().unwrap().replace('|', ", ");
    let batches = ctx
        .sql(&format!("SELECT {columns} FROM export"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    crate::support::dump_batches(&batches, &lake.root_arg)
}
