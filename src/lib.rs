//! quickchat-etl: SQL-first streaming and batch analytics on Apache Arrow, DataFusion and
//! Delta Lake.
//!
//! The data path reads left to right through the modules, in both modes (batch jobs and
//! streaming pipelines):
//!
//! ```text
//! sources ─▶ decode ─▶ query ─▶ stream (operator state, micro-batch loop) ─▶ sinks ─▶ meta
//! ```
//!
//! [`sources`] read records (files, MySQL, MongoDB, Kafka, the generator), [`decode`] turns them into
//! Arrow batches of the declared columns and sets bad ones aside, [`query`] plans the SQL (from
//! `sql/`) with its extensions, [`stream`] keeps a streaming pipeline's state across
//! micro-batches, [`sinks`] write into the [`catalog`]'s lake (and MySQL, Kafka), and [`meta`]
//! keeps the quarantine and run log. Around them: [`config`] (settings and pipeline files),
//! [`jobs`] (the registry, the job graph, the batch runner), [`kafka`], [`mongo`] and [`retry`]
//! (shared by sources, sinks and commands), [`metrics`] (what a run did), [`observe`] (the live UI's
//! metrics and progress), [`dashboards`] (`serve`: charts over the lake), [`http`] (what their
//! servers share), and [`commands`], one file per CLI subcommand.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboards;
pub mod decode;
pub mod error;
pub mod generate;
pub mod http;
pub mod jobs;
pub mod kafka;
pub mod meta;
pub mod metrics;
pub mod mongo;
pub mod mysql;
pub mod observe;
pub mod output;
pub mod progress;
pub mod project;
pub mod query;
pub mod repl;
pub mod retry;
pub mod sinks;
pub mod sources;
pub mod stream;

pub use error::{Error, ExitCode, Result};
