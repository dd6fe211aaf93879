//! Streaming pipelines: micro-batches from Kafka (or files, or the generator) through windowed
//! SQL into Delta, MySQL, Kafka and Parquet sinks, exactly once. The stages before and after
//! this module — `sources`, `decode`, `query`, `sinks` — serve batch jobs too; what is here is
//! the loop and the state only a stream has.
//!
//! The data path of one micro-batch (an *epoch*):
//!
//! ```text
//! input (Kafka / files / generator) ─▶ decode ─▶ dedup by key ─▶ late? ─▶ per output:
//!    offsets logged first                 │ bad records   │        windows, joins, partial
//!                                         ▼               ▼        aggregates into state
//!                                 meta.quarantine   <source>_late       │ emitted rows
//!                                                                       ▼
//!            sinks, idempotent per epoch (Delta app transaction, MySQL epoch marker)
//!                                                                       ▼
//!                    commit logged ─▶ state snapshot (every few seconds) ─▶ Kafka offsets
//! ```
//!
//! Files, in that order: [`engine`] (the loop and the commit) and [`recovery`] (a restart);
//! [`ingest`] (dedup, watermarks, late records); [`micro_batch`] (what queries see) and
//! [`outputs`] (every output's query, side by side); one file per stateful operator —
//! [`running`], [`windowed`], [`session`], [`join_buffer`] — and [`operator`] choosing one per
//! output; [`alerts`]; [`checkpoint`] and [`state_batches`] (how state is saved);
//! [`state_tables`] (the state as tables, for the live UI); [`faults`] (the test hook for
//! crashes).

pub mod alerts;
pub mod checkpoint;
pub mod engine;
pub mod faults;
pub mod ingest;
pub mod join_buffer;
pub mod micro_batch;
pub mod operator;
pub mod outputs;
pub mod recovery;
pub mod running;
pub mod session;
pub mod state_batches;
pub mod state_tables;
pub mod windowed;
