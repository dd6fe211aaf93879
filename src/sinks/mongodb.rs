//! The MongoDB sink of streaming outputs (the `kpi_db` collections of the interaction job we
//! replace) and of batch jobs: each row becomes a document whose `_id` is made of the sink's
//! key, upserted with `update` commands of many statements (one round trip per
//! [`STATEMENTS_PER_COMMAND`] rows); a streaming epoch is then recorded in the database's
//! `quickchat_epochs` collection, a batch run removes what it replaces ([`MongoSink::write_run`]).
//!
//! Exactly once, stated precisely: an epoch at or below the recorded one is skipped; an epoch
//! written again after a crash before its marker replaces the same documents with the same
//! contents (ids come from the key, or from the output, the epoch and the row's place), so a
//! collection never holds a row twice or misses one once the run has caught up. MongoDB-wire
//! servers without multi-document transactions (FerretDB 1, a standalone mongod) are served the
//! same way, so the upserts and the marker are not one atomic unit: a reader can see an epoch's
//! documents in part while it is written.
//!
//! Column types: timestamps become BSON dates (ISODate), integers Int64, floats Double,
//! booleans, strings and dates (as `YYYY-MM-DD` text) as JSON gives them.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use mongodb::Client;
use mongodb::bson::{Bson, Document, doc};

use super::rows::{Nulls, document_ids, rows_as_json};
use super::{Replace, SinkMetrics};
use crate::config::MongoSettings;
use crate::config::pipeline::MongodbSinkDef;
use crate::decode::reject::{Location, Reject};
use crate::error::{Error, Result};
use crate::mongo::{Failure, client, collection_origin, failure};

/// Upserts in one `update` command (the server takes up to 100,000).
const STATEMENTS_PER_COMMAND: usize = 1_000;
/// Why a `mongodb` sink cannot be written without a server.
pub const NOT_CONFIGURED: &str = "MONGODB_URI is not set (nor [mongodb] uri in the config file)";
/// The collection recording each target's last epoch.
const EPOCHS_COLLECTION: &str = "quickchat_epochs";

/// A client writing streaming outputs and batch jobs' results to one MongoDB server.
pub struct MongoSink {
    client: Client,
    settings: MongoSettings,
}

/// What an epoch's upserts did.
#[derive(Debug, Default)]
pub struct Upserted {
    /// Documents written.
    pub metrics: SinkMetrics,
    /// Documents the server refused (too large, a unique index), with its reasons.
    pub refused: Vec<Reject>,
}

impl MongoSink {
    /// Checks that the server answers and returns a client of it.
    pub async fn connect(settings: &MongoSettings) -> Result<Self> {
        let origin = settings.shown();
        let client = client(settings).await.map_err(|f| sink_error(&origin, f))?;
        client
            .database(&settings.database)
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| sink_error(&origin, failure(settings, "connecting to", &e)))?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    /// Upserts `rows` of `output`'s epoch `epoch` into the sink's collection and records the
    /// epoch for `pipeline` in `run` (the input and checkpoint lineage); does nothing when that
    /// epoch (or a later one) is recorded already.
    pub async fn upsert_epoch(
        &self,
        pipeline: &str,
        run: &str,
        output: &str,
        def: &MongodbSinkDef,
        epoch: u64,
        rows: &[RecordBatch],
    ) -> Result<Upserted> {
        let started = std::time::Instant::now();
        let database_name = def.database.as_deref().unwrap_or(&self.settings.database);
        let origin = collection_origin(database_name, &def.collection);
        let fail = |doing: &str, e: mongodb::error::Error| sink_error(&origin, failure(&self.settings, doing, &e));
        let database = self.client.database(database_name);
        let epochs = database.collection::<Document>(EPOCHS_COLLECTION);
        let target = format!("{pipeline}/{run}/{}", def.collection);
        let recorded = epochs
            .find_one(doc! {"_id": &target})
            .await
            .map_err(|e| fail("reading the epoch marker of", e))?
            .and_then(|marker| marker.get_i64("epoch").ok());
        if recorded.is_some_and(|done| done >= epoch as i64) {
            return Ok(Upserted::default());
        }

        let documents = documents(def, output, epoch, 0, rows).map_err(|message| unwritable(&origin, message))?;
        let mut upserted = self.upsert(&database, def, &origin, output, &documents).await?;
        epochs
            .update_one(
                doc! {"_id": &target},
                doc! {"$set": {"epoch": epoch as i64, "pipeline": pipeline, "collection": &def.collection}},
            )
            .upsert(true)
            .await
            .map_err(|e| fail("recording the epoch in", e))?;
        upserted.metrics.elapsed = started.elapsed();
        Ok(upserted)
    }

    /// Writes a batch job's result into the sink's collection, a record batch at a time as the
    /// query gives them (memory stays that of a batch, not of the result), each document tagged
    /// with the run in `quickchat_run`; then removes the documents of other runs that `replace`
    /// covers: all of them (`overwrite`), those of the run's days (`replace_partitions`), none
    /// (`append`). A rerun writes the same ids again, so it replaces rather than doubles; a
    /// reader sees the collection part-written while the run lasts (no multi-document
    /// transaction), and stale documents until the run's last step removes them.
    pub async fn write_run(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        job: &str,
        run_id: &str,
        def: &MongodbSinkDef,
        replace: &Replace,
    ) -> Result<Upserted> {
        let started = std::time::Instant::now();
        let database_name = def.database.as_deref().unwrap_or(&self.settings.database);
        let origin = collection_origin(database_name, &def.collection);
        let database = self.client.database(database_name);
        let query_failed = |e: DataFusionError| Error::compute(format!("job {job} writing {origin}"), e);
        let mut stream = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(query_failed)?
            .execute_stream()
            .await
            .map_err(query_failed)?;
        let schema = stream.schema();
        let run_ids = format!("{job}-{run_id}");
        let mut written = Upserted::default();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_failed)?;
            let mut documents = documents(def, &run_ids, 0, rows, std::slice::from_ref(&batch))
                .map_err(|message| unwritable(&origin, message))?;
            rows += batch.num_rows();
            for document in &mut documents {
                document.insert(RUN_FIELD, run_id);
            }
            let upserted = self.upsert(&database, def, &origin, job, &documents).await?;
            written.metrics.rows += upserted.metrics.rows;
            written.refused.extend(upserted.refused);
        }
        if let Some(filter) =
            stale_documents(replace, run_id, &schema).map_err(|message| unwritable(&origin, message))?
        {
            let removed = database
                .collection::<Document>(&def.collection)
                .delete_many(filter)
                .await
                .map_err(|e| sink_error(&origin, failure(&self.settings, "removing replaced documents from", &e)))?;
            tracing::info!(collection = %origin, documents = removed.deleted_count, "replaced documents removed");
        }
        written.metrics.elapsed = started.elapsed();
        Ok(written)
    }

    /// Upserts `documents` (each with its `_id`) into the sink's collection, many to a command;
    /// documents the server refuses are returned for the quarantine, as `output`'s.
    async fn upsert(
        &self,
        database: &mongodb::Database,
        def: &MongodbSinkDef,
        origin: &str,
        output: &str,
        documents: &[Document],
    ) -> Result<Upserted> {
        let fail = |doing: &str, e: mongodb::error::Error| sink_error(origin, failure(&self.settings, doing, &e));
        let mut upserted = Upserted::default();
        for chunk in documents.chunks(STATEMENTS_PER_COMMAND) {
            let updates: Vec<Document> = chunk
                .iter()
                .map(|document| doc! {"q": {"_id": document.get("_id").cloned().unwrap_or(Bson::Null)}, "u": document.clone(), "upsert": true})
                .collect();
            let answer = database
                .run_command(doc! {"update": &def.collection, "updates": updates, "ordered": false})
                .await
                .map_err(|e| fail("upserting into", e))?;
            let mut refused = vec![false; chunk.len()];
            if let Ok(errors) = answer.get_array("writeErrors") {
                for error in errors.iter().filter_map(Bson::as_document) {
                    let at = error.get_i32("index").unwrap_or(-1);
                    let Some(document) = usize::try_from(at).ok().and_then(|at| chunk.get(at)) else {
                        continue;
                    };
                    refused[at as usize] = true;
                    let reason = format!(
                        "MongoDB refused the document: {} (code {})",
                        error.get_str("errmsg").unwrap_or("no message"),
                        error.get_i32("code").unwrap_or(0)
                    );
                    upserted.refused.push(Reject::new(
                        output,
                        Location::Document {
                            collection: origin.to_string(),
                            id: document.get("_id").map(|id| id.to_string()).unwrap_or_default(),
                        },
                        reason,
                        Bson::Document(document.clone())
                            .into_relaxed_extjson()
                            .to_string()
                            .as_bytes(),
                    ));
                }
            }
            upserted.metrics.rows += refused.iter().filter(|r| !**r).count() as u64;
        }
        Ok(upserted)
    }
}

/// The field of a batch job's documents naming the run that wrote them.
pub const RUN_FIELD: &str = "quickchat_run";

/// The filter matching the documents `replace` covers that run `run_id` did not write, if it
/// covers any; a date column compares as the `YYYY-MM-DD` text it is written as, a timestamp
/// column as BSON dates.
fn stale_documents(
    replace: &Replace,
    run_id: &str,
    schema: &SchemaRef,
) -> std::result::Result<Option<Document>, String> {
    let mut filter = doc! {RUN_FIELD: {"$ne": run_id}};
    match replace {
        Replace::Nothing => return Ok(None),
        Replace::Everything => {}
        Replace::DateRange { column, start, end } => {
            let bounds = match schema.field_with_name(column).map(|f| f.data_type()) {
                Ok(DataType::Date32 | DataType::Date64) => doc! {"$gte": start.to_string(), "$lte": end.to_string()},
                Ok(DataType::Timestamp(_, _)) => {
                    let midnight = |day: chrono::NaiveDate| {
                        mongodb::bson::DateTime::from_millis(
                            day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis(),
                        )
                    };
                    let after_end = end.succ_opt().unwrap_or(*end);
                    doc! {"$gte": midnight(*start), "$lt": midnight(after_end)}
                }
                Ok(other) => {
                    return Err(format!(
                        "partition_by column `{column}` is {other}, not a date or timestamp"
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "partition_by column `{column}` is not a column of the job's result"
                    ));
                }
            };
            filter.insert(column.as_str(), bounds);
        }
    }
    Ok(Some(filter))
}

/// The documents of an epoch's rows, `_id` first.
fn documents(
    def: &MongodbSinkDef,
    output: &str,
    epoch: u64,
    first: usize,
    rows: &[RecordBatch],
) -> std::result::Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    for batch in rows {
        let ids = document_ids(batch, &def.key, output, epoch, first + documents.len()).map_err(|e| e.to_string())?;
        let timestamps: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
            .map(|f| f.name().as_str())
            .collect();
        let lines = rows_as_json(batch, Nulls::Explicit).map_err(|e| format!("rows as JSON: {e}"))?;
        for (line, id) in lines.iter().zip(ids) {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            let fields = mongodb::bson::to_document(&value).map_err(|e| e.to_string())?;
            let mut document = doc! {"_id": id};
            for (name, value) in fields {
                let value = match value {
                    Bson::String(text) if timestamps.contains(&name.as_str()) => {
                        as_date(&text).unwrap_or(Bson::String(text))
                    }
                    other => other,
                };
                document.insert(name, value);
            }
            documents.push(document);
        }
    }
    Ok(documents)
}

/// An ISO-8601 timestamp as Arrow's JSON writer gives it (with or without an offset) as a BSON
/// date, in UTC.
fn as_date(text: &str) -> Option<Bson> {
    let millis = match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(time) => time.timestamp_millis(),
        Err(_) => chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()?
            .and_utc()
            .timestamp_millis(),
    };
    Some(Bson::DateTime(mongodb::bson::DateTime::from_millis(millis)))
}

/// The error of rows that cannot become documents (or a replacement that cannot be asked for):
/// the data or the pipeline file, not the server, so not retried.
fn unwritable(origin: &str, message: String) -> Error {
    Error::Sink {
        table: origin.to_string(),
        message,
        retryable: false,
        cause: None,
    }
}

fn sink_error(origin: &str, failure: Failure) -> Error {
    Error::Sink {
        table: origin.to_string(),
        message: failure.message,
        retryable: failure.retryable,
        cause: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_become_documents_with_key_ids_and_bson_dates() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("window_start", crate::config::columns::timestamp_type(), false),
            Field::new("total_interactions", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["user_1"])),
                Arc::new(TimestampMicrosecondArray::from(vec![1_704_067_200_000_000]).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![Some(7)])),
            ],
        )
        .unwrap();
        let def = MongodbSinkDef {
            collection: "user_interactions".into(),
            database: None,
            key: vec!["window_start".into(), "user_id".into()],
            mode: None,
            partition_by: vec![],
            optional: false,
        };
        let written = documents(&def, "user_interactions", 3, 0, std::slice::from_ref(&batch)).unwrap();
        let document = &written[0];
        assert_eq!(document.keys().next().map(String::as_str), Some("_id"));
        assert!(document.get_str("_id").unwrap().ends_with("|user_1"), "{document}");
        assert_eq!(
            document.get_datetime("window_start").unwrap().timestamp_millis(),
            1_704_067_200_000
        );
        assert_eq!(document.get_i64("total_interactions").unwrap(), 7);
        let keyless = MongodbSinkDef { key: vec![], ..def };
        assert_eq!(
            documents(&keyless, "out", 3, 0, &[batch]).unwrap()[0]
                .get_str("_id")
                .unwrap(),
            "out-3-0"
        );
    }

    #[test]
    fn a_batch_run_replaces_the_documents_of_its_days_or_all_of_them_that_it_did_not_write() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Date32, false),
            Field::new("hour", crate::config::columns::timestamp_type(), false),
            Field::new("dau", DataType::Int64, false),
        ]));
        let (start, end) = (
            chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2024, 1, 3).unwrap(),
        );
        let days = |column: &str| Replace::DateRange {
            column: column.into(),
            start,
            end,
        };
        assert_eq!(stale_documents(&Replace::Nothing, "r2", &schema), Ok(None));
        assert_eq!(
            stale_documents(&Replace::Everything, "r2", &schema),
            Ok(Some(doc! {RUN_FIELD: {"$ne": "r2"}}))
        );
        assert_eq!(
            stale_documents(&days("date"), "r2", &schema),
            Ok(Some(
                doc! {RUN_FIELD: {"$ne": "r2"}, "date": {"$gte": "2024-01-02", "$lte": "2024-01-03"}}
            ))
        );
        let by_hour = stale_documents(&days("hour"), "r2", &schema).unwrap().unwrap();
        let bounds = by_hour.get_document("hour").unwrap();
        assert_eq!(
            bounds.get_datetime("$gte").unwrap().timestamp_millis(),
            1_704_153_600_000
        );
        assert_eq!(
            bounds.get_datetime("$lt").unwrap().timestamp_millis(),
            1_704_326_400_000,
            "up to the end of the last day"
        );
        assert!(
            stale_documents(&days("dau"), "r2", &schema)
                .unwrap_err()
                .contains("not a date")
        );
        assert!(
            stale_documents(&days("day"), "r2", &schema)
                .unwrap_err()
                .contains("not a column")
        );
    }
}
