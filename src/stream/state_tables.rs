//! The engine's answers to the live UI's questions about its state ([`crate::observe::live_state`]):
//! between two micro-batches, each stateful output's open windows, sessions or groups, finished
//! into the output's rows, and each joined source's buffered rows, as tables.

use super::engine::{Engine, JOIN_BUFFER};
use super::operator::Operator;
use crate::observe::live_state::{Answer, Question, StateTable, StateTableSummary};

/// The suffix naming a joined source's buffer among the state tables.
const JOIN_BUFFER_SUFFIX: &str = "_join_buffer";

impl Engine<'_> {
    /// Answers the questions asked since the last micro-batch.
    pub(super) async fn answer_state_questions(&mut self) {
        let Some(inbox) = self.state_inbox.as_mut() else {
            return;
        };
        let mut pending = Vec::new();
        while let Some(question) = inbox.waiting() {
            pending.push(question);
        }
        for question in pending {
            let answer = match &question.question {
                Question::List => Answer::List(self.state_tables()),
                Question::Table(name) => match self.state_table(name).await {
                    Ok(table) => Answer::Table(table),
                    Err(e) => Answer::Failed(e.to_string()),
                },
            };
            question.answer(self.epoch, answer);
        }
    }

    /// The state tables: stateful outputs in file order, then join buffers.
    fn state_tables(&self) -> Vec<StateTableSummary> {
        let outputs = self
            .queries
            .iter()
            .filter(|q| !matches!(q.operator, Operator::Stateless))
            .map(|q| summary(q.output.name.clone(), q.operator_name(), q.state_size()));
        let buffers = self
            .join_buffers
            .iter()
            .map(|(source, buffer)| summary(format!("{source}{JOIN_BUFFER_SUFFIX}"), JOIN_BUFFER, buffer.size()));
        outputs.chain(buffers).collect()
    }

    /// One state table's rows; `None` when there is none named `name`.
    async fn state_table(&self, name: &str) -> crate::error::Result<Option<StateTable>> {
        if let Some(query) = self.queries.iter().find(|q| q.output.name == name) {
            let Some(rows) = query.open_rows(self.pipeline).await? else {
                return Ok(None);
            };
            return Ok(Some(StateTable {
                summary: summary(name.to_string(), query.operator_name(), query.state_size()),
                schema: query.planned.schema(),
                rows,
            }));
        }
        let buffered = name
            .strip_suffix(JOIN_BUFFER_SUFFIX)
            .and_then(|source| Some((self.pipeline.source(source)?, self.join_buffers.get(source)?)));
        Ok(buffered.map(|(source, buffer)| StateTable {
            summary: summary(name.to_string(), JOIN_BUFFER, buffer.size()),
            schema: source.schema.clone(),
            rows: buffer.rows().to_vec(),
        }))
    }
}

fn summary(name: String, operator: &'static str, size: super::state_batches::StateSize) -> StateTableSummary {
    StateTableSummary {
        name,
        operator,
        state_rows: size.rows as u64,
        state_bytes: size.bytes as u64,
    }
}
