//! The console sink: a streaming output's rows printed as a table, micro-batch by micro-batch
//! (for trying a pipeline out; a replay prints nothing again).

use arrow::record_batch::RecordBatch;

use super::SinkMetrics;
use crate::error::{Error, Result};

/// Prints `rows` of `output` for `epoch`.
pub fn print(output: &str, epoch: u64, rows: &[RecordBatch]) -> Result<SinkMetrics> {
    let table = arrow::util::pretty::pretty_format_batches(rows)
        .map_err(|e| Error::compute(format!("printing output {output}"), e))?;
    println!("== {output} (epoch {epoch}) ==\n{table}");
    Ok(SinkMetrics {
        rows: rows.iter().map(|b| b.num_rows() as u64).sum(),
        ..Default::default()
    })
}
