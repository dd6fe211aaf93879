//! Watching a run: [`telemetry`], the Prometheus metrics a running pipeline exposes, derived
//! from each micro-batch's [`progress`]; [`server`], the HTTP server `run` starts beside a
//! streaming pipeline to serve them; [`process`], the process's own memory and CPU time;
//! [`job_metrics`], a batch run's final figures pushed to a Pushgateway or written to a file, and
//! [`batch_run`], its figures while it runs, served on its UI;
//! [`latest_rows`], what each output last wrote, for the live page; [`live_state`], what the
//! operators hold, asked of the engine.

pub mod batch_run;
pub mod job_metrics;
pub mod latest_rows;
pub mod live_state;
pub mod process;
pub mod progress;
pub mod server;
pub mod telemetry;
