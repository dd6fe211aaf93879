//! `bench --only sinks`: the MongoDB and Elasticsearch sinks writing a streaming output's
//! epochs (interaction windows per item, the `002_*`/`003_*` shape): documents per second and
//! the time of an epoch when every document is new, then when every id is written again (what
//! an update-mode output does to its open windows). Each server is measured when configured
//! (`MONGODB_URI`, `ELASTICSEARCH_URL`), in a database or an index of the bench's own that is
//! dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::{Row, peak_rss_mb, reset_peak_rss};
use crate::cli::BenchArgs;
use crate::config::columns::timestamp_type;
use crate::config::pipeline::{
    DEFAULT_BULK_MAX_BYTES, DEFAULT_BULK_MAX_DOCS, ElasticsearchSinkDef, MongodbSinkDef, WriteMode,
};
use crate::config::{MongoSettings, Settings};
use crate::error::{Error, Result};
use crate::metrics::Latencies;
use crate::sinks::elasticsearch::ElasticsearchSink;
use crate::sinks::mongodb::MongoSink;

/// Epochs each pass writes; `--sink-rows` are spread over them.
const EPOCHS: u64 = 20;
const OUTPUT: &str = "agg_interactions_item";

/// Measures the configured document sinks.
pub(super) async fn sinks(settings: &Settings, args: &BenchArgs, rows: &mut Vec<Row>) -> Result<()> {
    let per_epoch = (args.sink_rows / EPOCHS).max(1) as usize;
    let name = format!("quickchat-bench-{}", std::process::id());
    let key = vec!["window_start".to_string(), "item_id".to_string()];
    match &settings.mongodb {
        Some(server) => {
            let mongodb = MongoSettings {
                database: name.replace('-', "_"),
                ..server.clone()
            };
            let def = MongodbSinkDef {
                collection: "item_interactions".into(),
                database: None,
                key: key.clone(),
                mode: Some(WriteMode::Update),
                partition_by: Vec::new(),
                optional: false,
            };
            println!(
                "sinks: {} documents in {EPOCHS} epochs, twice, to {} database {} ...",
                per_epoch as u64 * EPOCHS,
                mongodb.shown(),
                mongodb.database
            );
            let sink = MongoSink::connect(&mongodb).await?;
            let client = crate::mongo::client(&mongodb)
                .await
                .map_err(|failure| Error::Internal(failure.message))?;
            let collection = client
                .database(&mongodb.database)
                .collection::<mongodb::bson::Document>(&def.collection);
            let write = |epoch, batch| {
                let (sink, def) = (&sink, &def);
                async move {
                    let upserted = sink
                        .upsert_epoch("bench", "bench", OUTPUT, def, epoch, &[batch])
                        .await?;
                    Ok(upserted.metrics.rows)
                }
            };
            let stored = || async {
                collection
                    .count_documents(mongodb::bson::doc! {})
                    .await
                    .map_err(|e| Error::Internal(format!("counting the bench's documents in {}: {e}", mongodb.shown())))
            };
            let measured = both_passes("mongodb", per_epoch, rows, write, stored).await;
            let _ = client.database(&mongodb.database).drop().await;
            measured?;
        }
        None => println!("sinks: mongodb skipped (no --mongodb-uri or MONGODB_URI)"),
    }
    match &settings.elasticsearch {
        Some(server) => {
            let def = ElasticsearchSinkDef {
                index: name.clone(),
                key,
                mode: Some(WriteMode::Update),
                index_by_day: None,
                bulk_max_docs: DEFAULT_BULK_MAX_DOCS,
                bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
                optional: false,
            };
            println!(
                "sinks: {} documents in {EPOCHS} epochs, twice, to {} index {name} ...",
                per_epoch as u64 * EPOCHS,
                server.shown()
            );
            let sink = ElasticsearchSink::connect(server).await?;
            let write = |epoch, batch| {
                let (sink, def) = (&sink, &def);
                async move { Ok(sink.index_rows(def, OUTPUT, epoch, &[batch]).await?.metrics.rows) }
            };
            let stored = || sink.document_count(&name);
            let measured = both_passes("elasticsearch", per_epoch, rows, write, stored).await;
            let _ = sink.delete_index(&name).await;
            measured?;
        }
        None => println!("sinks: elasticsearch skipped (no --elasticsearch-url or ELASTICSEARCH_URL)"),
    }
    Ok(())
}

/// Writes [`EPOCHS`] epochs of new windows through `write`, then the same windows again with
/// other counts, and adds a row of figures for each pass (`sinks: <server> new|rewrite`). After
/// each pass the server must hold exactly one document per window (`stored`), none lost, none
/// doubled by the rewrite; the pass fails otherwise.
async fn both_passes<W, WriteFut, S, StoredFut>(
    server: &str,
    per_epoch: usize,
    rows: &mut Vec<Row>,
    write: W,
    stored: S,
) -> Result<()>
where
    W: Fn(u64, RecordBatch) -> WriteFut,
    WriteFut: std::future::Future<Output = Result<u64>>,
    S: Fn() -> StoredFut,
    StoredFut: std::future::Future<Output = Result<u64>>,
{
    for (pass, first_epoch) in [("new", 1), ("rewrite", EPOCHS + 1)] {
        reset_peak_rss();
        let mut epochs = Latencies::default();
        let mut documents = 0;
        let started = Instant::now();
        for n in 0..EPOCHS {
            let batch = windows(n, per_epoch, first_epoch + n);
            let epoch_started = Instant::now();
            documents += write(first_epoch + n, batch).await?;
            epochs.record(epoch_started.elapsed());
        }
        let seconds = started.elapsed().as_secs_f64();
        let expected = per_epoch as u64 * EPOCHS;
        let held = stored().await?;
        if documents != expected || held != expected {
            return Err(Error::Internal(format!(
                "sinks: {server} {pass}: {documents} documents written and {held} stored, {expected} expected"
            )));
        }
        rows.push(row(format!("sinks: {server} {pass}"), documents, seconds, &epochs));
    }
    Ok(())
}

fn row(phase: String, documents: u64, seconds: f64, epochs: &Latencies) -> Row {
    println!(
        "{phase}: {documents} documents in {seconds:.1}s ({:.0}/s), epoch p50 {} ms",
        documents as f64 / seconds.max(1e-9),
        epochs.quantile(0.5).as_millis()
    );
    Row {
        phase,
        events: documents,
        seconds,
        latency: Some((epochs.quantile(0.5), epochs.quantile(0.99))),
        peak_rss_mb: peak_rss_mb(),
        note: format!("{EPOCHS} epochs, 1 window of {} items each", documents / EPOCHS),
    }
}

/// One minute's window of `items` items (window `n`), counts varying with `salt`.
fn windows(n: u64, items: usize, salt: u64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("total_interactions", DataType::Int64, false),
        Field::new("total_click", DataType::Int64, false),
        Field::new("total_view", DataType::Int64, false),
    ]));
    let start = 1_704_067_200_000_000 + n as i64 * 60_000_000;
    let count = |i: usize, f: u64| ((i as u64 * 31 + salt * f) % 97) as i64;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![start; items]).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![start + 60_000_000; items]).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values((0..items).map(|i| format!("item_{i}")))),
            Arc::new(Int64Array::from_iter_values(
                (0..items).map(|i| count(i, 7) + count(i, 3)),
            )),
            Arc::new(Int64Array::from_iter_values((0..items).map(|i| count(i, 7)))),
            Arc::new(Int64Array::from_iter_values((0..items).map(|i| count(i, 3)))),
        ],
    )
    .expect("columns of one length")
}
