//! Tests of [`super::SinkWriter`] against real Delta tables in a temporary lake.

use std::collections::BTreeMap;

use arrow::array::Int64Array;
use arrow::datatypes::DataType;

use super::*;
use crate::catalog::open;
use crate::config::pipeline::DeltaSinkDef;
use crate::config::stream_pipeline::tests::pipeline;

#[tokio::test]
async fn a_kept_table_sees_what_another_writer_committed_before_merging() {
    let (_dir, lake) = Lake::temporary();
    let pipeline = pipeline(&["clicks"]);
    let mut writer = SinkWriter::new(&lake, &pipeline, "files", "lineage", SinkSettings::default());
    let sink = SinkDef::Delta(DeltaSinkDef {
        table: "gold.kept".into(),
        partition_by: Vec::new(),
        mode: Some(WriteMode::Update),
        key: vec!["n".into()],
        compact_every: 0,
        zorder_by: Vec::new(),
        table_properties: Default::default(),
    });
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let rows = |keys: std::ops::Range<i64>, v: i64| {
        let n = (keys.end - keys.start) as usize;
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(keys)),
                Arc::new(Int64Array::from(vec![v; n])),
            ],
        )
        .unwrap()
    };
    let table = TableName::parse("gold.kept").unwrap();
    writer
        .write("out", &sink, 1, &schema, &[rows(0..10, 1)], false)
        .await
        .unwrap();
    writer
        .write("out", &sink, 2, &schema, &[rows(10..20, 1)], false)
        .await
        .unwrap();
    // A `maintain` run compacts the table behind the stream's kept snapshot.
    let ctx = crate::query::new_session();
    let compacted = DeltaSink::new(&lake, table.clone()).compact(&ctx).await.unwrap();
    assert_eq!((compacted.files_removed, compacted.files_added), (2, 1));
    writer
        .write("out", &sink, 3, &schema, &[rows(0..20, 3)], false)
        .await
        .unwrap();

    let provider = crate::catalog::table_provider(&lake, &table, &ctx).await.unwrap();
    let totals = ctx
        .read_table(provider)
        .unwrap()
        .aggregate(
            vec![],
            vec![datafusion::functions_aggregate::expr_fn::sum(datafusion::prelude::col(
                "v",
            ))],
        )
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows_now = crate::catalog::table_provider(&lake, &table, &ctx).await.unwrap();
    assert_eq!(
        ctx.read_table(rows_now).unwrap().count().await.unwrap(),
        20,
        "no row doubled"
    );
    let sum = totals[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(sum, 60, "every row updated once");
}

#[tokio::test]
async fn a_delta_sink_compacts_after_every_n_commits_and_keeps_rows_and_epochs() {
    // Append tables are kept up beside the stream, update tables between merges.
    for (mode, key) in [(WriteMode::Append, vec![]), (WriteMode::Update, vec!["n".to_string()])] {
        let (_dir, lake) = Lake::temporary();
        let pipeline = pipeline(&["clicks"]);
        let mut writer = SinkWriter::new(&lake, &pipeline, "files", "lineage", SinkSettings::default());
        let sink = SinkDef::Delta(DeltaSinkDef {
            table: "gold.compacted".into(),
            partition_by: Vec::new(),
            mode: Some(mode),
            key,
            compact_every: 3,
            zorder_by: Vec::new(),
            table_properties: Default::default(),
        });
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let table = TableName::parse("gold.compacted").unwrap();
        let mut files_after = Vec::new();
        for epoch in 1..=4i64 {
            let values: Vec<i64> = (0..10).map(|i| epoch * 10 + i).collect();
            let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
            writer
                .write("out", &sink, epoch as u64, &schema, &[rows], false)
                .await
                .unwrap();
            writer.settle().await;
            let opened = open(&lake, &table).await.unwrap().unwrap();
            files_after.push(opened.get_file_uris().unwrap().count());
        }
        assert_eq!(
            files_after,
            [1, 2, 1, 2],
            "{mode:?}: three one-file commits compacted into one"
        );

        let ctx = crate::query::new_session();
        let provider = crate::catalog::table_provider(&lake, &table, &ctx).await.unwrap();
        assert_eq!(
            ctx.read_table(provider).unwrap().count().await.unwrap(),
            40,
            "{mode:?}: no row lost or doubled"
        );
        let recorded = app_transaction_version(&lake, &table, &writer.app_id("gold.compacted")).await;
        assert_eq!(
            recorded.unwrap(),
            Some(4),
            "{mode:?}: the epoch marker survives compaction"
        );
    }
}

#[tokio::test]
async fn a_streaming_delta_sink_creates_its_table_with_a_day_of_log_unless_told_otherwise() {
    let (_dir, lake) = Lake::temporary();
    let pipeline = pipeline(&["clicks"]);
    let mut writer = SinkWriter::new(&lake, &pipeline, "files", "lineage", SinkSettings::default());
    let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    for (table, properties) in [
        ("gold.defaults", BTreeMap::new()),
        (
            "gold.told",
            BTreeMap::from([("delta.logRetentionDuration".to_string(), "interval 3 hours".to_string())]),
        ),
    ] {
        let sink = SinkDef::Delta(DeltaSinkDef {
            table: table.into(),
            partition_by: Vec::new(),
            mode: Some(WriteMode::Append),
            key: Vec::new(),
            compact_every: 0,
            zorder_by: Vec::new(),
            table_properties: properties,
        });
        writer
            .write("out", &sink, 1, &schema, std::slice::from_ref(&rows), false)
            .await
            .unwrap();
        let opened = open(&lake, &TableName::parse(table).unwrap()).await.unwrap().unwrap();
        let config = opened.snapshot().unwrap().table_config();
        let hours = |d: Option<std::time::Duration>| d.map(|d| d.as_secs() / 3600);
        assert_eq!(hours(config.deleted_file_retention_duration), Some(24), "{table}");
        let log_hours = if table == "gold.told" { 3 } else { 24 };
        assert_eq!(hours(config.log_retention_duration), Some(log_hours), "{table}");
    }
}
