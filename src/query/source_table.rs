//! A batch job's JSON-lines or Extended JSON source as a table DataFusion reads while the job
//! runs: its files are read in chunks of whole lines ([`LineChunks`]), each chunk decoded on
//! the blocking pool and its batches handed to the query as they come, a few batches ahead
//! at most. Reading a source of any size takes memory for a few chunks, not for its files; what
//! the query keeps (sorts, joins, aggregations) is the memory pool's to bound and spill.
//!
//! The records that do not decode are collected for the quarantine, and the rows counted, in
//! a [`SourceRead`] the job runner reads once the query ran (or failed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;

use crate::config::job::Source;
use crate::decode::decode_lines;
use crate::decode::reject::Reject;
use crate::error::{Error, Result};
use crate::sources::files::{FileRef, LineChunks};

/// What reading a source gave so far.
#[derive(Debug, Default)]
pub struct SourceRead {
    rows: AtomicU64,
    rejects: Mutex<Vec<Reject>>,
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
}

/// The table of `source` over `files`, and where its reading is counted.
pub fn source_table(source: &Source, files: Vec<FileRef>) -> Result<(StreamingTable, Arc<SourceRead>)> {
    let read = Arc::new(SourceRead::default());
    let partition = LinesPartition {
        source: source.clone(),
        files,
        read: read.clone(),
    };
    let table = StreamingTable::try_new(source.schema.clone(), vec![Arc::new(partition)])
        .map_err(|e| Error::Internal(format!("source {}: {e}", source.name)))?;
    Ok((table, read))
}

/// Decoded batches waiting for the query (a chunk gives a few).
const BATCHES_AHEAD: usize = 4;

#[derive(Debug)]
struct LinesPartition {
    source: Source,
    files: Vec<FileRef>,
    read: Arc<SourceRead>,
}

impl PartitionStream for LinesPartition {
    fn schema(&self) -> &SchemaRef {
        &self.source.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(self.source.schema.clone(), BATCHES_AHEAD);
        let tx = builder.tx();
        let (source, files, read) = (self.source.clone(), self.files.clone(), self.read.clone());
        builder.spawn(async move {
            let failed = |e: Error| DataFusionError::External(Box::new(e));
            for file in files {
                let mut chunks = LineChunks::open(&source.name, file).await.map_err(failed)?;
                while let Some(chunk) = chunks.next().await.map_err(failed)? {
                    let decoding = source.clone();
                    let (batches, rejected) = tokio::task::spawn_blocking(move || decode_lines(&decoding, &chunk))
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?;
                    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                    read.rows.fetch_add(rows as u64, Ordering::Relaxed);
                    read.rejects.lock().expect("rejects lock").extend(rejected);
                    for batch in batches {
                        if tx.send(Ok(batch)).await.is_err() {
                            // The query stopped reading (a LIMIT, a failure elsewhere).
                            return Ok(());
                        }
                    }
                }
            }
            Ok(())
        });
        builder.build()
    }
}
