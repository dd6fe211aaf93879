//! What a running pipeline's operators hold — open windows, open sessions, running groups, join
//! buffers — as tables the live UI serves (`/api/state`, `/api/state/<table>`) and `sql
//! --attach` queries as `live.<table>`. The state belongs to the engine's loop, so a question
//! goes to it over a channel ([`LiveState`] asks, [`StateInbox`] is the engine's end) and is
//! answered between two micro-batches: an answer is consistent (one committed epoch), costs the
//! stream nothing when nobody asks, and waits at most for the micro-batch in progress.

use std::sync::Mutex;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// How long a question waits for the engine (a micro-batch in progress, a sink retrying).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Questions waiting for the engine at most; more are refused as busy.
const QUEUED_QUESTIONS: usize = 16;

/// A state table in the list: its name, the operator holding it, its size.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateTableSummary {
    /// `<output>` for an output's open windows, sessions or groups; `<source>_join_buffer`
    /// for the rows a joined source keeps.
    pub name: String,
    /// What holds the rows: `windowed aggregate`, `session aggregate`, `running aggregate`,
    /// `join buffer`.
    pub operator: &'static str,
    /// Rows of state (accumulator rows, buffered rows).
    pub state_rows: u64,
    /// Arrow memory of those rows.
    pub state_bytes: u64,
}

/// One state table's rows as of a committed epoch.
#[derive(Debug, Clone)]
pub struct StateTable {
    /// Its name and size.
    pub summary: StateTableSummary,
    /// Its columns: the output's (an open window's current values, as the output would emit
    /// them if it closed now), or the joined source's.
    pub schema: SchemaRef,
    /// Its rows.
    pub rows: Vec<RecordBatch>,
}

/// What the engine is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// The state tables and their sizes.
    List,
    /// One state table's rows.
    Table(String),
}

/// The engine's answer, with the epoch it is as of.
#[derive(Debug)]
pub enum Answer {
    /// The state tables.
    List(Vec<StateTableSummary>),
    /// The table asked for, `None` when there is none of that name.
    Table(Option<StateTable>),
    /// Computing the table failed (the message says why).
    Failed(String),
}

/// A question on its way to the engine, with where the answer goes.
type Asked = (Question, oneshot::Sender<(u64, Answer)>);

/// Why a question got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// No engine takes questions: the run ended, or it is not a streaming run.
    NotRunning,
    /// The engine did not answer within [`ANSWER_WITHIN`], or too many questions wait.
    Busy,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::NotRunning => write!(f, "the pipeline is not running: its state is in its checkpoint"),
            Unanswered::Busy => write!(
                f,
                "the pipeline did not answer within {}s (a long micro-batch, or a sink retrying); try again",
                ANSWER_WITHIN.as_secs()
            ),
        }
    }
}

/// The live UI's end: asks the engine about its state.
#[derive(Debug)]
pub struct LiveState {
    questions: mpsc::Sender<Asked>,
    /// The engine's end, until the engine takes it.
    inbox: Mutex<Option<StateInbox>>,
}

impl Default for LiveState {
    fn default() -> Self {
        let (questions, inbox) = mpsc::channel(QUEUED_QUESTIONS);
        Self {
            questions,
            inbox: Mutex::new(Some(StateInbox(inbox))),
        }
    }
}

impl LiveState {
    /// The engine's end of the channel; `None` once taken.
    pub fn take_inbox(&self) -> Option<StateInbox> {
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Asks the engine; the answer comes with the epoch it is as of.
    pub async fn ask(&self, question: Question) -> Result<(u64, Answer), Unanswered> {
        if self
            .inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
        {
            return Err(Unanswered::NotRunning);
        }
        let (reply, answer) = oneshot::channel();
        self.questions.try_send((question, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Unanswered::Busy,
            mpsc::error::TrySendError::Closed(_) => Unanswered::NotRunning,
        })?;
        match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(Unanswered::NotRunning),
            Err(_) => Err(Unanswered::Busy),
        }
    }
}

/// The engine's end: the questions asked since it last looked.
#[derive(Debug)]
pub struct StateInbox(mpsc::Receiver<Asked>);

/// A question the engine answers.
#[derive(Debug)]
pub struct Pending {
    /// What is asked.
    pub question: Question,
    reply: oneshot::Sender<(u64, Answer)>,
}

impl Pending {
    /// Sends the answer, as of `epoch` (nobody may be waiting any more: then it is dropped).
    pub fn answer(self, epoch: u64, answer: Answer) {
        let _ = self.reply.send((epoch, answer));
    }
}

impl StateInbox {
    /// The next question waiting, without waiting for one.
    pub fn waiting(&mut self) -> Option<Pending> {
        let (question, reply) = self.0.try_recv().ok()?;
        Some(Pending { question, reply })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_question_is_answered_by_the_inbox_and_refused_when_nobody_takes_questions() {
        let live = LiveState::default();
        assert_eq!(live.ask(Question::List).await.unwrap_err(), Unanswered::NotRunning);
        let mut inbox = live.take_inbox().unwrap();
        assert!(live.take_inbox().is_none());
        let engine = tokio::spawn(async move {
            loop {
                if let Some(pending) = inbox.waiting() {
                    assert_eq!(pending.question, Question::Table("views".into()));
                    pending.answer(7, Answer::Table(None));
                    return inbox;
                }
                tokio::task::yield_now().await;
            }
        });
        let (epoch, answer) = live.ask(Question::Table("views".into())).await.unwrap();
        assert_eq!(epoch, 7);
        assert!(matches!(answer, Answer::Table(None)));
        drop(engine.await.unwrap());
        assert_eq!(live.ask(Question::List).await.unwrap_err(), Unanswered::NotRunning);
    }
}
