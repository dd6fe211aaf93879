//! Printing query results and listings: an aligned table for people, CSV or JSON lines for
//! scripts.

use std::io::Write;

use arrow::record_batch::RecordBatch;

use crate::cli::OutputFormat;
use crate::error::{Error, Result};

/// Writes batches in the given format. `table` prints nothing but a note for an empty result.
pub fn write_batches(out: &mut dyn Write, batches: &[RecordBatch], format: OutputFormat) -> Result<()> {
    let io = |e: std::io::Error| Error::io("standard output", e);
    let arrow = |e: arrow::error::ArrowError| Error::Internal(format!("formatting results: {e}"));
    match format {
        OutputFormat::Table => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 && batches.iter().all(|b| b.num_columns() == 0) {
                return Ok(());
            }
            let table = arrow::util::pretty::pretty_format_batches(batches).map_err(arrow)?;
            writeln!(out, "{table}").map_err(io)?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            if batches.is_empty() {
                return Ok(());
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
        }
    }
    Ok(())
}
