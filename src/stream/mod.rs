//! Streaming pipelines: micro-batches from Kafka (or files, or the generator) through windowed
//! SQL into Delta, MySQL, Kafka and Parquet sinks, exactly once.
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

pub mod aggregate;
pub mod alerts;
pub mod analysis;
pub mod checkpoint;
pub mod decode;
pub mod engine;
pub mod ingest;
pub mod input;
pub mod kafka;
pub mod outputs;
pub mod pipeline;
pub mod protobuf;
pub mod query;
pub mod records;
pub mod report;
pub mod session;
pub mod sinks;
pub mod window;

pub use pipeline::{StreamOutput, StreamPipeline, StreamSource};
