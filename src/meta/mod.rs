//! The lake's own tables under the `meta` layer: the quarantine of rejected and dropped
//! records, and the run log. Both are Delta tables, queryable in `quickchat-etl sql` as
//! `meta.quarantine` and `meta.run_log`.

pub mod quarantine;
pub mod run_log;

use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::columns::timestamp_type;

/// Days since the Unix epoch, as Arrow `Date32` stores them.
pub fn date32(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

/// A UTC timestamp in microseconds, as the project's timestamp type stores it.
pub fn timestamp_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The project's timestamp type (microseconds, UTC).
pub fn timestamp() -> DataType {
    timestamp_type()
}
