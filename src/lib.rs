//! quickchat-etl: SQL-first streaming and batch analytics on Apache Arrow, DataFusion and
//! Delta Lake.
//!
//! The data path reads left to right through the modules: [`sources`] turn external inputs
//! into Arrow batches, [`query`] plans each job's SQL (from `sql/`) with its expectations,
//! [`sinks`] write the result into the [`catalog`]'s lake in one commit, and [`meta`] keeps
//! the quarantine and run log. [`jobs`] loads the pipeline files and runs them in dependency
//! order; [`commands`] holds one file per CLI subcommand.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod generate;
pub mod jobs;
pub mod meta;
pub mod output;
pub mod progress;
pub mod project;
pub mod query;
pub mod repl;
pub mod sinks;
pub mod sources;
pub mod stream;

pub use error::{Error, ExitCode, Result};
