//! Against real services started by `scripts/test.sh`: `bronze-users` reading MariaDB, and the
//! whole pipeline with the lake on an S3 server (MinIO), which must give the same tables as a
//! local lake.

use mysql_async::prelude::Queryable;
use quickchat_etl::query::DateRange;

use crate::support::{Servers, TestLake, assert_golden, golden_spec, registry, users_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bronze_users_reads_mariadb_exactly_like_its_csv_export() {
    let (mut admin, url, database) = users_database("quickchat_it").await;

    let registry = registry();
    let from_mysql = TestLake::local();
    let reports = from_mysql
        .run(
            &registry,
            "bronze-users",
            DateRange::All,
            Servers {
                mysql_url: Some(&url),
                ..Servers::default()
            },
        )
        .await;
    let outcome = reports.into_iter().next().unwrap().outcome;
    admin.query_drop(format!("DROP DATABASE {database}")).await.unwrap();
    outcome.unwrap();

    let from_csv = TestLake::local();
    from_csv.generate(&golden_spec()).await;
    from_csv.run_ok(&registry, "bronze-users", DateRange::All).await;

    let users = "SELECT * EXCLUDE (_source) FROM bronze.users";
    assert_eq!(from_mysql.query(users).await, from_csv.query(users).await);
    assert_eq!(
        from_mysql.query("SELECT count(*) FROM bronze.users").await,
        "count(*)\n23\n"
    );
    // The legacy zero date is quarantined from MySQL just as from the CSV file.
    let bad = "SELECT rule, reason, record FROM meta.quarantine";
    assert_eq!(from_mysql.query(bad).await, from_csv.query(bad).await);
    let location = from_mysql.query("SELECT location FROM meta.quarantine").await;
    assert!(location.contains("mysql:users:13"), "{location}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_pipeline_on_s3_gives_the_golden_tables() {
    let lake = TestLake::s3();
    lake.generate(&golden_spec()).await;
    lake.run_ok(&registry(), "full-pipeline", DateRange::All).await;
    assert_golden(&lake.dump_all().await);
}
