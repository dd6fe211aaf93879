//! Exactly once: a streaming pipeline's rows of an epoch to its sinks, every write at most once
//! per epoch, so a restart that processes an epoch again writes nothing twice:
//!
//! - Delta: the commit records the epoch as an application transaction
//!   (`quickchat-etl/<pipeline>/<input>/<lineage>/<target>`); an epoch at or below the recorded
//!   one is skipped. Update mode merges on the sink's key.
//! - MySQL: the upserts and the epoch marker commit in one transaction (see `sinks::mysql`).
//! - Parquet: one file per epoch with a name made of the epoch, so a replay overwrites it.
//! - Kafka: at least once; only the epoch in flight at a crash can be sent twice (replays of
//!   committed epochs send nothing).
//! - Elasticsearch: documents have ids made of the sink's key, so a replay overwrites them;
//!   documents the server refuses go to `meta.quarantine` with the epoch's rejects.
//! - MongoDB: upserts by an `_id` made of the key, then an epoch marker (see `sinks::mongodb`).
//! - Console: printed.
//!
//! Late records go to their source's late table and rejects to `meta.quarantine` the same way.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use chrono::Utc;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use super::delta::{DeltaSink, OpenTables, Upsert, existing, incoming, oldest, time_key};
use super::elasticsearch::ElasticsearchSink;
use super::kafka::KafkaSink;
use super::mongodb::MongoSink;
use super::mysql::MysqlSink;
use super::parquet::ParquetSink;
use super::upkeep::Upkeep;
use super::{Replace, SinkMetrics, console};
use crate::catalog::{Lake, TableName, app_transaction_version};
use crate::config::columns::timestamp_type;
use crate::config::pipeline::{SinkDef, WriteMode, streaming_table_properties};
use crate::config::stream_pipeline::{StreamPipeline, StreamSource};
use crate::config::{ElasticsearchSettings, MongoSettings};
use crate::decode::reject::Reject;
use crate::error::{Error, Result};
use crate::retry::Retries;

/// Where the sinks' servers are.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// MySQL URL with credentials.
    pub mysql_url: Option<String>,
    /// Kafka bootstrap servers.
    pub brokers: Option<String>,
    /// The Elasticsearch server.
    pub elasticsearch: Option<ElasticsearchSettings>,
    /// The MongoDB server.
    pub mongodb: Option<MongoSettings>,
}

/// Writes the rows of one pipeline's epochs.
pub struct SinkWriter<'a> {
    lake: &'a Lake,
    pipeline: &'a StreamPipeline,
    input: &'static str,
    lineage: String,
    /// Per Delta application id: the last epoch the table holds from it.
    written: HashMap<String, Option<i64>>,
    /// Compaction and log expiry of the Delta tables written.
    upkeep: Upkeep,
    /// The Delta tables written so far, kept open between epochs.
    open_tables: OpenTables,
    ctx: SessionContext,
    servers: SinkSettings,
    mysql: Option<MysqlSink>,
    kafka: Option<KafkaSink>,
    elasticsearch: Option<ElasticsearchSink>,
    mongodb: Option<MongoSink>,
    /// Documents Elasticsearch or MongoDB refused in the epoch being written, for its rejects.
    refused: Vec<Reject>,
}

impl<'a> SinkWriter<'a> {
    /// A writer for `pipeline` run from `input` (`kafka`, `files`, `generator`) in the
    /// checkpoint lineage `lineage`, reaching the servers of `servers`.
    pub fn new(
        lake: &'a Lake,
        pipeline: &'a StreamPipeline,
        input: &'static str,
        lineage: &str,
        servers: SinkSettings,
    ) -> Self {
        Self {
            lake,
            pipeline,
            input,
            lineage: lineage.to_string(),
            written: HashMap::new(),
            upkeep: Upkeep::default(),
            open_tables: OpenTables::default(),
            ctx: crate::query::new_session(),
            servers,
            mysql: None,
            kafka: None,
            elasticsearch: None,
            mongodb: None,
            refused: Vec::new(),
        }
    }

    /// Why a sink cannot be written with the settings given (no MySQL URL, no brokers, no
    /// Elasticsearch server).
    pub fn unavailable(&self, sink: &SinkDef) -> Option<String> {
        match sink {
            SinkDef::Mysql(_) if self.servers.mysql_url.is_none() => {
                Some("MYSQL_URL is not set (nor [mysql] url in the config file)".into())
            }
            SinkDef::Kafka(_) if self.servers.brokers.is_none() => {
                Some("KAFKA_BOOTSTRAP_SERVERS is not set (nor [kafka] brokers in the pipeline file)".into())
            }
            SinkDef::Elasticsearch(_) if self.servers.elasticsearch.is_none() => {
                Some("ELASTICSEARCH_URL is not set (nor [elasticsearch] url in the config file)".into())
            }
            SinkDef::Mongodb(_) if self.servers.mongodb.is_none() => Some(super::mongodb::NOT_CONFIGURED.into()),
            _ => None,
        }
    }

    /// The error of writing a sink whose server is not configured, saying which setting is missing.
    fn not_configured(&self, sink: &SinkDef) -> Error {
        Error::Sink {
            table: sink.display(),
            message: self
                .unavailable(sink)
                .unwrap_or_else(|| "its server is not configured".into()),
            retryable: false,
            cause: None,
        }
    }

    /// The application id an epoch is recorded under in a target.
    pub fn app_id(&self, target: &str) -> String {
        format!(
            "quickchat-etl/{}/{}/{}/{target}",
            self.pipeline.name, self.input, self.lineage
        )
    }

    /// Whether `table` already holds `epoch` from application `app_id`.
    async fn holds(&mut self, table: &TableName, app_id: &str, epoch: u64) -> Result<bool> {
        let version = match self.written.get(app_id) {
            Some(version) => *version,
            None => {
                let version = app_transaction_version(self.lake, table, app_id).await?;
                self.written.insert(app_id.to_string(), version);
                version
            }
        };
        Ok(version.is_some_and(|v| v >= epoch as i64))
    }

    fn wrote(&mut self, app_id: &str, epoch: u64) {
        self.written.insert(app_id.to_string(), Some(epoch as i64));
    }

    /// Writes rows of `output` to one of its sinks for `epoch`. `replay` is set for epochs
    /// already committed before a restart: sinks that cannot tell (Kafka, console) skip them.
    pub async fn write(
        &mut self,
        output: &str,
        sink: &SinkDef,
        epoch: u64,
        schema: &SchemaRef,
        rows: &[RecordBatch],
        replay: bool,
    ) -> Result<SinkMetrics> {
        let write = Write::Output {
            output,
            sink,
            schema,
            rows,
            replay,
        };
        self.retrying(epoch, write).await
    }

    /// Appends a source's late records of `epoch` to its late table, with the watermark they
    /// missed.
    pub async fn write_late(
        &mut self,
        source: &StreamSource,
        epoch: u64,
        late: &RecordBatch,
        watermark: i64,
    ) -> Result<SinkMetrics> {
        let write = Write::Late {
            source,
            late,
            watermark,
        };
        self.retrying(epoch, write).await
    }

    /// Appends unusable records of `epoch` to the quarantine, with the documents a sink's
    /// server refused in the epoch.
    pub async fn write_rejects(&mut self, epoch: u64, rejects: &[Reject]) -> Result<SinkMetrics> {
        if self.refused.is_empty() {
            return self.retrying(epoch, Write::Rejects(rejects)).await;
        }
        let mut all = rejects.to_vec();
        all.append(&mut self.refused);
        self.retrying(epoch, Write::Rejects(&all)).await
    }

    /// Writes `write` of `epoch`, again while it fails in a way that may pass (a server away,
    /// a full disk), per the process's retry policy. Each try is idempotent: a write of an
    /// epoch the target already holds writes nothing, so a try whose commit landed though its
    /// answer was lost is not written twice. Between tries the writer forgets what it knew of
    /// its targets (the epochs they hold; after a MySQL failure, its connection) and asks them
    /// again. The Kafka sink retries deliveries itself.
    async fn retrying(&mut self, epoch: u64, write: Write<'_>) -> Result<SinkMetrics> {
        if let Write::Output {
            sink: SinkDef::Kafka(_),
            ..
        } = write
        {
            return self.write_once(epoch, &write).await;
        }
        let mut retries = Retries::new(crate::retry::operation::SINK_WRITE, crate::retry::policy());
        loop {
            let failed = match self.write_once(epoch, &write).await {
                Ok(metrics) => return Ok(metrics),
                Err(e) => e,
            };
            self.written.clear();
            if let Write::Output {
                sink: SinkDef::Mysql(_),
                ..
            } = write
            {
                self.mysql = None;
            }
            if let Some(given_up) = retries.wait_after(&write.describe(epoch), failed).await {
                return Err(given_up);
            }
        }
    }

    async fn write_once(&mut self, epoch: u64, write: &Write<'_>) -> Result<SinkMetrics> {
        match *write {
            Write::Output {
                output,
                sink,
                schema,
                rows,
                replay,
            } => self.write_output(output, sink, epoch, schema, rows, replay).await,
            Write::Late {
                source,
                late,
                watermark,
            } => self.write_late_once(source, epoch, late, watermark).await,
            Write::Rejects(rejects) => self.write_rejects_once(epoch, rejects).await,
        }
    }

    async fn write_output(
        &mut self,
        output: &str,
        sink: &SinkDef,
        epoch: u64,
        schema: &SchemaRef,
        rows: &[RecordBatch],
        replay: bool,
    ) -> Result<SinkMetrics> {
        let rows: Vec<RecordBatch> = rows.iter().filter(|b| b.num_rows() > 0).cloned().collect();
        if rows.is_empty() {
            return Ok(SinkMetrics::default());
        }
        match sink {
            SinkDef::Delta(def) => {
                let table = TableName::parse(&def.table).map_err(Error::Internal)?;
                let app_id = self.app_id(&table.to_string());
                if self.holds(&table, &app_id, epoch).await? {
                    return Ok(SinkMetrics::default());
                }
                let delta = DeltaSink::new(self.lake, table.clone())
                    .with_open_tables(&self.open_tables)
                    .with_partition_columns(&def.partition_by)
                    .with_table_properties(streaming_table_properties(&def.table_properties))
                    .with_app_transaction(&app_id, epoch as i64)
                    .with_commit_metadata("quickchat.job", &self.pipeline.name)
                    .with_commit_metadata("quickchat.output", output);
                let merged = match sink.mode() {
                    WriteMode::Update => time_key(schema, &def.key).and_then(|c| Some((c, oldest(&rows, c)?))),
                    _ => None,
                };
                let metrics = match sink.mode() {
                    // A one-row output (an aggregate without GROUP BY) has no key: it replaces the table.
                    WriteMode::Update if def.key.is_empty() => {
                        delta
                            .with_replace(Replace::Everything)
                            .write_batches(&self.ctx, schema.clone(), rows)
                            .await?
                    }
                    WriteMode::Update => {
                        let on = def
                            .key
                            .iter()
                            .map(|k| existing(k).eq(incoming(k)))
                            .reduce(Expr::and)
                            .expect("a key column");
                        let upsert = Upsert {
                            on,
                            delete_unmatched: None,
                        };
                        delta.upsert_batches(&self.ctx, schema.clone(), rows, upsert).await?
                    }
                    _ => delta.write_batches(&self.ctx, schema.clone(), rows).await?,
                };
                self.wrote(&app_id, epoch);
                let owner = (self.pipeline.name.as_str(), output);
                self.upkeep
                    .after_commit(
                        self.lake,
                        &self.open_tables,
                        &self.ctx,
                        owner,
                        &table,
                        def,
                        sink.mode(),
                        merged,
                    )
                    .await;
                Ok(metrics)
            }
            SinkDef::Mysql(def) => {
                let url = self.servers.mysql_url.clone().ok_or_else(|| Error::Sink {
                    table: format!("mysql:{}", def.table),
                    message: "no MySQL URL configured: set MYSQL_URL (and MYSQL_USER/MYSQL_PASSWORD)".into(),
                    retryable: false,
                    cause: None,
                })?;
                if self.mysql.is_none() {
                    self.mysql = Some(MysqlSink::connect(&url).await?);
                }
                let mysql = self.mysql.as_mut().expect("connected above");
                let lineage = format!("{}/{}", self.input, self.lineage);
                mysql
                    .upsert_epoch(
                        &self.pipeline.name,
                        &lineage,
                        &def.table,
                        &def.key,
                        epoch,
                        schema,
                        &rows,
                    )
                    .await
            }
            SinkDef::Parquet(def) => {
                ParquetSink::new(self.lake, &def.path)?
                    .write_file(&self.ctx, &format!("{output}-{epoch:020}.parquet"), rows)
                    .await
            }
            SinkDef::Kafka(def) => {
                if replay {
                    return Ok(SinkMetrics::default());
                }
                let brokers = self.servers.brokers.clone().ok_or_else(|| Error::Sink {
                    table: format!("kafka:{}", def.topic),
                    message: "no Kafka brokers configured: set KAFKA_BOOTSTRAP_SERVERS".into(),
                    retryable: false,
                    cause: None,
                })?;
                if self.kafka.is_none() {
                    self.kafka = Some(KafkaSink::connect(&brokers)?);
                }
                self.kafka
                    .as_ref()
                    .expect("connected above")
                    .send_rows(&def.topic, &def.key, &rows)
                    .await
            }
            SinkDef::Elasticsearch(def) => {
                if self.elasticsearch.is_none() {
                    let settings = self
                        .servers
                        .elasticsearch
                        .as_ref()
                        .ok_or_else(|| self.not_configured(sink))?;
                    self.elasticsearch = Some(ElasticsearchSink::connect(settings).await?);
                }
                let search = self.elasticsearch.as_ref().expect("connected above");
                let indexed = search.index_rows(def, output, epoch, &rows).await?;
                self.refused.extend(indexed.refused);
                Ok(indexed.metrics)
            }
            SinkDef::Mongodb(def) => {
                if self.mongodb.is_none() {
                    let settings = self.servers.mongodb.as_ref().ok_or_else(|| self.not_configured(sink))?;
                    self.mongodb = Some(MongoSink::connect(settings).await?);
                }
                let mongo = self.mongodb.as_ref().expect("connected above");
                let lineage = format!("{}/{}", self.input, self.lineage);
                let upserted = mongo
                    .upsert_epoch(&self.pipeline.name, &lineage, output, def, epoch, &rows)
                    .await?;
                self.refused.extend(upserted.refused);
                Ok(upserted.metrics)
            }
            SinkDef::Console(_) if replay => Ok(SinkMetrics {
                rows: rows.iter().map(|b| b.num_rows() as u64).sum(),
                ..Default::default()
            }),
            SinkDef::Console(_) => console::print(output, epoch, &rows),
        }
    }

    /// Waits for the upkeep running beside the stream (at the end of a run, so that a process
    /// that exits leaves no compaction half done).
    pub async fn settle(&mut self) {
        self.upkeep.settle().await;
    }

    async fn write_late_once(
        &mut self,
        source: &StreamSource,
        epoch: u64,
        late: &RecordBatch,
        watermark: i64,
    ) -> Result<SinkMetrics> {
        if late.num_rows() == 0 {
            return Ok(SinkMetrics::default());
        }
        let app_id = self.app_id(&source.late_table.to_string());
        if self.holds(&source.late_table, &app_id, epoch).await? {
            return Ok(SinkMetrics::default());
        }
        let mut fields: Vec<Field> = late.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("_watermark", timestamp_type(), false));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let mut columns: Vec<ArrayRef> = late.columns().to_vec();
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![watermark; late.num_rows()]).with_timezone("UTC"),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::compute(format!("late records of {}", source.name), e))?;
        let metrics = DeltaSink::new(self.lake, source.late_table.clone())
            .with_open_tables(&self.open_tables)
            .with_table_properties(streaming_table_properties(&Default::default()))
            .with_app_transaction(&app_id, epoch as i64)
            .with_commit_metadata("quickchat.job", &self.pipeline.name)
            .write_batches(&self.ctx, schema, vec![batch])
            .await?;
        self.wrote(&app_id, epoch);
        Ok(metrics)
    }

    async fn write_rejects_once(&self, epoch: u64, rejects: &[Reject]) -> Result<SinkMetrics> {
        let app_id = self.app_id("meta.quarantine");
        crate::meta::quarantine::append_epoch(
            self.lake,
            &self.ctx,
            &self.pipeline.name,
            &app_id,
            epoch,
            rejects,
            Utc::now(),
        )
        .await
    }
}

/// One write of an epoch, kept to be tried again.
enum Write<'w> {
    Output {
        output: &'w str,
        sink: &'w SinkDef,
        schema: &'w SchemaRef,
        rows: &'w [RecordBatch],
        replay: bool,
    },
    Late {
        source: &'w StreamSource,
        late: &'w RecordBatch,
        watermark: i64,
    },
    Rejects(&'w [Reject]),
}

impl Write<'_> {
    fn describe(&self, epoch: u64) -> String {
        match self {
            Write::Output { output, sink, .. } => format!("writing epoch {epoch} of {output} to {}", sink.display()),
            Write::Late { source, .. } => format!("writing epoch {epoch}'s late records to {}", source.late_table),
            Write::Rejects(_) => format!("writing epoch {epoch}'s rejects to meta.quarantine"),
        }
    }
}

#[cfg(test)]
#[path = "epoch_tests.rs"]
mod tests;
