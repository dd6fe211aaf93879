//! [`LatestRows`]: what each output of a running pipeline last emitted and last changed, the
//! tables under the live page's charts. Each micro-batch replaces an output's tail with the
//! last [`LATEST_ROWS`] rows it wrote — copied, so the UI never keeps a micro-batch alive.

use std::collections::BTreeMap;
use std::sync::Mutex;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use serde_json::{Value, json};

use crate::sinks::rows::rows_as_json_values;

/// Rows kept per output and kind.
pub const LATEST_ROWS: usize = 20;

/// An output's last rows.
#[derive(Debug, Default)]
struct Latest {
    /// The micro-batch that last wrote rows.
    batch_id: u64,
    /// Final rows (closed windows, stateless rows): the last ones emitted, in any micro-batch.
    emitted: Option<RecordBatch>,
    /// Changed rows (open windows' and groups' current values) of the last micro-batch that
    /// changed any.
    changed: Option<RecordBatch>,
}

/// What each output last emitted and changed, by pipeline and output.
#[derive(Debug, Default)]
pub struct LatestRows(Mutex<BTreeMap<(String, String), Latest>>);

impl LatestRows {
    /// Keeps the tails of the rows `output` of `pipeline` wrote in micro-batch `batch_id`:
    /// `final_rows` for append sinks, `changed_rows` for update sinks. An empty side leaves
    /// the rows kept before.
    pub fn keep(
        &self,
        pipeline: &str,
        output: &str,
        batch_id: u64,
        final_rows: &[RecordBatch],
        changed_rows: &[RecordBatch],
    ) {
        let (emitted, changed) = (tail(final_rows), tail(changed_rows));
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let latest = all.entry((pipeline.to_string(), output.to_string())).or_default();
        if emitted.is_some() || changed.is_some() {
            latest.batch_id = batch_id;
        }
        if emitted.is_some() {
            latest.emitted = emitted;
        }
        if changed.is_some() {
            latest.changed = changed;
        }
    }

    /// Makes `output` of `pipeline` known before it writes: its rows are empty until then.
    pub fn add_output(&self, pipeline: &str, output: &str) {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.entry((pipeline.to_string(), output.to_string())).or_default();
    }

    /// The outputs known so far: `(pipeline, output)`.
    pub fn outputs(&self) -> Vec<(String, String)> {
        let all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        all.keys().cloned().collect()
    }

    /// `output`'s last rows as JSON (`None`: no such output): `{pipeline, output, batch_id,
    /// emitted: {columns, rows}, changed: {columns, rows}}`, rows as objects by column.
    pub fn json(&self, output: &str) -> Option<Value> {
        let all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ((pipeline, _), latest) = all.iter().find(|((_, name), _)| name == output)?;
        Some(json!({
            "pipeline": pipeline,
            "output": output,
            "batch_id": latest.batch_id,
            "emitted": table(latest.emitted.as_ref()),
            "changed": table(latest.changed.as_ref()),
        }))
    }
}

/// The last [`LATEST_ROWS`] rows of `batches`, copied into one batch.
fn tail(batches: &[RecordBatch]) -> Option<RecordBatch> {
    let mut wanted = LATEST_ROWS;
    let mut slices = Vec::new();
    for batch in batches.iter().rev().filter(|b| b.num_rows() > 0) {
        if wanted == 0 {
            break;
        }
        let take = wanted.min(batch.num_rows());
        slices.push(batch.slice(batch.num_rows() - take, take));
        wanted -= take;
    }
    slices.reverse();
    let schema = slices.first()?.schema();
    // The same schema throughout: every batch of an output comes from its one query.
    concat_batches(&schema, &slices).ok()
}

/// A batch as `{columns, rows}`; nulls are JSON nulls.
fn table(batch: Option<&RecordBatch>) -> Value {
    let Some(batch) = batch else {
        return json!({"columns": [], "rows": []});
    };
    let columns: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
    let rows = match rows_as_json_values(std::slice::from_ref(batch)) {
        Ok(rows) => Value::Array(rows),
        Err(e) => json!([{ "error": e.to_string() }]),
    };
    json!({"columns": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, to: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("page", DataType::Utf8, true),
            Field::new("views", DataType::Int64, false),
        ]));
        let pages: StringArray = (from..to).map(|i| (i % 2 == 0).then(|| format!("p{i}"))).collect();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(pages), Arc::new(Int64Array::from_iter_values(from..to))],
        )
        .unwrap()
    }

    #[test]
    fn an_output_keeps_the_tail_of_its_last_final_and_changed_rows_across_quiet_micro_batches() {
        let latest = LatestRows::default();
        latest.keep("p", "page_views", 1, &[batch(0, 15), batch(15, 30)], &[batch(100, 103)]);
        latest.keep("p", "page_views", 2, &[], &[batch(200, 201)]);
        let shown = latest.json("page_views").unwrap();
        assert_eq!(shown["batch_id"], 2);
        let emitted = shown["emitted"]["rows"].as_array().unwrap();
        assert_eq!(emitted.len(), LATEST_ROWS);
        assert_eq!(emitted[0], json!({"page": "p10", "views": 10}));
        assert_eq!(emitted[LATEST_ROWS - 1], json!({"page": null, "views": 29}));
        assert_eq!(shown["changed"]["rows"], json!([{"page": "p200", "views": 200}]));
        assert_eq!(shown["emitted"]["columns"], json!(["page", "views"]));
        assert!(latest.json("nothing").is_none());
        latest.add_output("p", "quiet");
        assert_eq!(
            latest.json("quiet").unwrap()["emitted"],
            json!({"columns": [], "rows": []})
        );
        assert_eq!(latest.outputs().len(), 2);
    }
}
