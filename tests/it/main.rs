//! The integration tests, in one binary (each extra test binary costs a DataFusion link).
//! Tests that need MariaDB, the S3 server, MongoDB, Elasticsearch or Kafka expect
//! `scripts/test.sh` to have started them and exported their addresses.

mod browser;
mod cli;
mod connection_security;
mod elasticsearch;
mod golden;
mod job_metrics;

mod live_state;
mod live_ui;
mod mongodb;
mod outage_support;
mod outages;
mod services;
mod sql_files;
mod stream_support;
mod streaming;
mod streaming_golden;
mod streaming_runs;
mod support;
