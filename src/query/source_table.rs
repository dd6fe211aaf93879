//! A batch job's source as a table DataFusion reads while the job runs, a piece at a time:
//! JSON-lines and Extended JSON files in chunks of whole lines ([`LineChunks`], each chunk
//! decoded on the blocking pool), CSV files through the parser on a blocking thread
//! ([`BlockingFileRead`]), MySQL tables row by row as the server sends them, MongoDB collections
//! in chunks of documents ([`DocumentChunks`], decoded on the blocking pool). Batches reach the
//! query as they are decoded, a few ahead at most, so a source of any size takes memory for a
//! few chunks or batches, not for its files; what the query keeps (sorts, joins, aggregations)
//! is the memory pool's to bound and spill.
//!
//! The records that do not decode are collected for the quarantine, the rows counted and a
//! failure to read kept, in a [`SourceRead`] the job runner reads once the query ran (or failed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc::Sender;

use crate::config::job::Source;
use crate::decode::reject::{Location, Reject};
use crate::decode::text_table::TextTable;
use crate::decode::{csv, decode_documents, decode_lines};
use crate::error::{Error, Result};
use crate::sources::BoundedInput;
use crate::sources::files::{BlockingFileRead, FileRef, LineChunks};
use crate::sources::mongodb::{CollectionRead, DocumentChunks};
use crate::sources::mysql::{TableRows, read_table, row_origin};

/// What reading a source gave so far.
#[derive(Debug, Default)]
pub struct SourceRead {
    rows: AtomicU64,
    rejects: Mutex<Vec<Reject>>,
    failure: Mutex<Option<Error>>,
}

impl SourceRead {
    /// Rows decoded.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The records that did not decode, taken.
    pub fn take_rejects(&self) -> Vec<Reject> {
        std::mem::take(&mut *self.rejects.lock().expect("rejects lock"))
    }

    /// Why reading the source failed, taken (the query fails with a copy of its message; this
    /// keeps the source's error, with its location and whether a retry may help).
    pub fn take_failure(&self) -> Option<Error> {
        self.failure.lock().expect("failure lock").take()
    }
}

/// The table of `source` read from `input`, and where its reading is counted.
pub fn source_table(source: &Source, input: BoundedInput) -> Result<(StreamingTable, Arc<SourceRead>)> {
    let read = Arc::new(SourceRead::default());
    let partition = SourcePartition {
        source: source.clone(),
        input,
        read: read.clone(),
    };
    let table = StreamingTable::try_new(source.schema.clone(), vec![Arc::new(partition)])
        .map_err(|e| Error::Internal(format!("source {}: {e}", source.name)))?;
    Ok((table, read))
}

/// Decoded batches waiting for the query (a chunk gives a few).
const BATCHES_AHEAD: usize = 4;

#[derive(Debug)]
struct SourcePartition {
    source: Source,
    input: BoundedInput,
    read: Arc<SourceRead>,
}

impl PartitionStream for SourcePartition {
    fn schema(&self) -> &SchemaRef {
        &self.source.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.source.schema.clone(), BATCHES_AHEAD);
        let out = Batches {
            tx: builder.tx(),
            read: self.read.clone(),
        };
        let (source, input) = (self.source.clone(), self.input.clone());
        builder.spawn(async move {
            let read = out.read.clone();
            let outcome = match input {
                BoundedInput::Lines(files) => read_lines(&source, files, &out).await,
                BoundedInput::Csv(files) => read_csv(&source, files, out).await,
                BoundedInput::Mysql { table, url } => read_mysql(&source, &table, &url, out).await,
                BoundedInput::Mongodb(read) => read_mongodb(&source, read, &out).await,
            };
            outcome.map_err(|e| {
                let message = e.to_string();
                *read.failure.lock().expect("failure lock") = Some(e);
                DataFusionError::Execution(message)
            })
        });
        builder.build()
    }
}

/// Where a source's batches go: the query's channel, and the counts.
#[derive(Clone)]
struct Batches {
    tx: Sender<datafusion::error::Result<RecordBatch>>,
    read: Arc<SourceRead>,
}

impl Batches {
    fn count(&self, batches: &[RecordBatch], rejected: Vec<Reject>) {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        self.read.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.read.rejects.lock().expect("rejects lock").extend(rejected);
    }

    /// Hands batches to the query; false once it stopped reading (a LIMIT, a failure elsewhere).
    async fn send(&self, batches: Vec<RecordBatch>, rejected: Vec<Reject>) -> bool {
        self.count(&batches, rejected);
        for batch in batches {
            if self.tx.send(Ok(batch)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// [`send`](Self::send), from a blocking thread.
    fn blocking_send(&self, batches: Vec<RecordBatch>, rejected: Vec<Reject>) -> bool {
        self.count(&batches, rejected);
        batches
            .into_iter()
            .all(|batch| self.tx.blocking_send(Ok(batch)).is_ok())
    }
}

async fn read_lines(source: &Source, files: Vec<FileRef>, out: &Batches) -> Result<()> {
    for file in files {
        let mut chunks = LineChunks::open(&source.name, file).await?;
        while let Some(chunk) = chunks.next().await? {
            if !decode_and_send(source, chunk, decode_lines, out).await? {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn read_mongodb(source: &Source, read: CollectionRead, out: &Batches) -> Result<()> {
    let mut chunks = DocumentChunks::open(source, read).await?;
    while let Some(chunk) = chunks.next().await? {
        if !decode_and_send(source, chunk, decode_documents, out).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// A chunk's batches and the records of it that did not decode.
type Decoded = (Vec<RecordBatch>, Vec<Reject>);

/// Decodes a chunk on the blocking pool and hands its batches to the query; false once the
/// query stopped reading.
async fn decode_and_send<C: Send + 'static>(
    source: &Source,
    chunk: C,
    decode: fn(&Source, &C) -> Decoded,
    out: &Batches,
) -> Result<bool> {
    let decoding = source.clone();
    let (batches, rejected) = tokio::task::spawn_blocking(move || decode(&decoding, &chunk))
        .await
        .map_err(|e| Error::Internal(format!("decoding source {}: {e}", source.name)))?;
    Ok(out.send(batches, rejected).await)
}

async fn read_csv(source: &Source, files: Vec<FileRef>, out: Batches) -> Result<()> {
    for file in files {
        let shown = file.shown.clone();
        let input = BlockingFileRead::open(&source.name, file).await?;
        let (decoding, handing) = (source.clone(), out.clone());
        let parse = move || {
            csv::decode(&decoding.schema, input, &decoding.name, &shown, |batches, rejected| {
                handing.blocking_send(batches, rejected)
            })
        };
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| Error::Internal(format!("decoding source {}: {e}", source.name)))??;
        if out.tx.is_closed() {
            // The query stopped reading.
            break;
        }
    }
    Ok(())
}

async fn read_mysql(source: &Source, table: &str, url: &str, out: Batches) -> Result<()> {
    /// Rows into batches of the declared schema, handed on as they fill.
    struct Rows {
        table: TextTable,
        out: Batches,
    }

    #[async_trait::async_trait]
    impl TableRows for Rows {
        async fn row(&mut self, row: u64, cells: &[Option<&[u8]>]) -> bool {
            self.table.push_row(row, cells.iter().copied());
            if !self.table.has_ready() {
                return true;
            }
            let (batches, rejected) = self.table.take_ready();
            self.out.send(batches, rejected).await
        }
    }

    let origin = row_origin(table);
    let table_rows = TextTable::new(source.schema.clone(), &source.name, move |row| Location::Row {
        table: origin.clone(),
        row,
    });
    let mut rows = Rows { table: table_rows, out };
    read_table(source, table, url, &mut rows).await?;
    let (batches, rejected) = rows.table.finish();
    rows.out.send(batches, rejected).await;
    Ok(())
}
