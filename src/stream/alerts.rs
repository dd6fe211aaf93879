//! Alert rules: each micro-batch, the rows an output emitted (its changed rows) are checked
//! against the rules watching it; a row satisfying a rule's condition raises an alert the first
//! time its key value does, and never again for that rule and key (the keys raised are part of
//! the checkpointed state). Alerts are rows of [`alert_schema`] for the pipeline's alert sinks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;

use serde::{Deserialize, Serialize};

use crate::config::columns::timestamp_type;
use crate::config::stream::AlertRuleDef;
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};
use crate::query::new_session;
use crate::sinks::rows::{key_texts, rows_as_json_lines};

/// The columns of an alert.
pub fn alert_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rule", DataType::Utf8, false),
        Field::new("output", DataType::Utf8, false),
        Field::new("alert_key", DataType::Utf8, false),
        Field::new("condition", DataType::Utf8, false),
        Field::new("row", DataType::Utf8, false),
        Field::new("raised_at", timestamp_type(), false),
    ]))
}

/// The alert rules of a pipeline and the keys they raised.
pub struct Alerts {
    rules: Vec<AlertRuleDef>,
    /// Per rule: hashes of the key values already raised.
    raised: BTreeMap<String, HashSet<u128>>,
    ctx: SessionContext,
}

/// What alerts save in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// Per rule: hashes of the key values already raised, sorted.
    pub raised: BTreeMap<String, Vec<u128>>,
}

impl Alerts {
    /// The pipeline's rules, with their conditions checked against the outputs' schemas.
    pub fn new(pipeline: &StreamPipeline, output_schemas: &HashMap<String, SchemaRef>) -> Result<Self> {
        let rules = pipeline.alerts.as_ref().map(|a| a.rules.clone()).unwrap_or_default();
        let ctx = new_session();
        for rule in &rules {
            let problem = |message: String| {
                Error::config_in(
                    &pipeline.pipeline_path,
                    format!("alerts rule `{}`: {message}", rule.name),
                )
            };
            let schema = output_schemas
                .get(&rule.output)
                .ok_or_else(|| problem(format!("no output `{}`", rule.output)))?;
            let df = ctx
                .read_batch(RecordBatch::new_empty(schema.clone()))
                .map_err(|e| problem(e.to_string()))?;
            let condition = df.parse_sql_expr(&rule.condition).map_err(|e| problem(e.to_string()))?;
            df.filter(condition).map_err(|e| problem(e.to_string()))?;
            if let Some(missing) = rule.key.iter().find(|k| schema.index_of(k).is_err()) {
                return Err(problem(format!(
                    "key column `{missing}` is not in output `{}`",
                    rule.output
                )));
            }
        }
        let raised = rules.iter().map(|r| (r.name.clone(), HashSet::new())).collect();
        Ok(Self { rules, raised, ctx })
    }

    /// Whether there are rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The alerts raised by the rows the outputs emitted in a micro-batch (`changed`: output →
    /// rows), each rule and key once.
    pub async fn check(&mut self, changed: &HashMap<String, Vec<RecordBatch>>, now_micros: i64) -> Result<RecordBatch> {
        let mut columns: [Vec<String>; 5] = Default::default();
        for rule in &self.rules {
            let Some(rows) = changed.get(&rule.output).filter(|rows| !rows.is_empty()) else {
                continue;
            };
            let internal =
                |e: datafusion::error::DataFusionError| Error::compute(format!("alerts rule `{}`", rule.name), e);
            let df = self.ctx.read_batches(rows.iter().cloned()).map_err(internal)?;
            let condition = df.parse_sql_expr(&rule.condition).map_err(internal)?;
            let matching = df
                .filter(condition)
                .map_err(internal)?
                .collect()
                .await
                .map_err(internal)?;
            let raised = self.raised.entry(rule.name.clone()).or_default();
            for batch in matching.iter().filter(|b| b.num_rows() > 0) {
                let keys = key_texts(batch, &rule.key)
                    .map_err(|e| Error::compute(format!("alerts rule `{}`", rule.name), e))?;
                let json =
                    rows_as_json_lines(batch).map_err(|e| Error::compute(format!("alerts rule `{}`", rule.name), e))?;
                for (row, key) in keys.into_iter().enumerate() {
                    if raised.insert(xxhash_rust::xxh3::xxh3_128(key.as_bytes())) {
                        columns[0].push(rule.name.clone());
                        columns[1].push(rule.output.clone());
                        columns[2].push(key);
                        columns[3].push(rule.condition.clone());
                        columns[4].push(json[row].clone());
                    }
                }
            }
        }
        let rows = columns[0].len();
        let mut arrays: Vec<ArrayRef> = columns
            .into_iter()
            .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
            .collect();
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![now_micros; rows]).with_timezone("UTC"),
        ));
        RecordBatch::try_new(alert_schema(), arrays).map_err(|e| Error::Internal(e.to_string()))
    }

    /// The state to save.
    pub fn state(&self) -> AlertState {
        AlertState {
            raised: self
                .raised
                .iter()
                .map(|(rule, keys)| {
                    let mut keys: Vec<u128> = keys.iter().copied().collect();
                    keys.sort_unstable();
                    (rule.clone(), keys)
                })
                .collect(),
        }
    }

    /// Restores a saved state.
    pub fn restore(&mut self, state: AlertState) {
        for (rule, keys) in state.raised {
            self.raised.insert(rule, keys.into_iter().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array};

    use super::*;
    use crate::config::stream::AlertsDef;
    use crate::config::stream_pipeline::tests::pipeline;

    #[tokio::test]
    async fn a_rule_raises_once_per_key_when_its_condition_first_holds() {
        let mut pipeline = pipeline(&["clicks"]);
        pipeline.alerts = Some(AlertsDef {
            sinks: Vec::new(),
            rules: vec![AlertRuleDef {
                name: "busy_item".into(),
                output: "items".into(),
                condition: "max_per_minute > 12".into(),
                key: vec!["item_id".into()],
            }],
        });
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("max_per_minute", DataType::Int64, false),
        ]));
        let outputs = HashMap::from([("items".to_string(), schema.clone())]);
        let mut alerts = Alerts::new(&pipeline, &outputs).unwrap();
        let rows = |items: &[(&str, i64)]| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(items.iter().map(|i| i.0))),
                    Arc::new(Int64Array::from_iter_values(items.iter().map(|i| i.1))),
                ],
            )
            .unwrap();
            HashMap::from([("items".to_string(), vec![batch])])
        };
        let first = alerts.check(&rows(&[("a", 13), ("b", 12)]), 0).await.unwrap();
        assert_eq!(first.num_rows(), 1);
        assert_eq!(first.column(2).as_string::<i32>().value(0), "a");
        assert!(
            first
                .column(4)
                .as_string::<i32>()
                .value(0)
                .contains("\"max_per_minute\":13")
        );
        let second = alerts.check(&rows(&[("a", 20), ("b", 14)]), 0).await.unwrap();
        assert_eq!(second.num_rows(), 1, "`a` was raised already");
        assert_eq!(second.column(2).as_string::<i32>().value(0), "b");

        let mut restored = Alerts::new(&pipeline, &outputs).unwrap();
        restored.restore(alerts.state());
        assert_eq!(restored.check(&rows(&[("a", 30)]), 0).await.unwrap().num_rows(), 0);

        pipeline.alerts.as_mut().unwrap().rules[0].condition = "nope > 1".into();
        let e = Alerts::new(&pipeline, &outputs).err().unwrap().to_string();
        assert!(e.contains("alerts rule `busy_item`") && e.contains("nope"), "{e}");
    }
}
