//! Sinks: where rows are written — Delta tables, Parquet files, MySQL, Kafka, Elasticsearch,
//! MongoDB, the console — in both modes. Each sink is a builder whose writes return [`SinkMetrics`]; every
//! deltalake call of the project lives in [`delta`], so a deltalake API change touches one file.
//! A batch job writes one sink in one commit, replacing what its [`Replace`] says; a streaming
//! pipeline writes every epoch through [`epoch::SinkWriter`], which makes each write happen at
//! most once per epoch. [`rows`] renders rows as text for the sinks and tables that need it.

pub mod console;
pub mod delta;
pub mod elasticsearch;
pub mod epoch;
pub mod kafka;
pub mod mongodb;
pub mod mysql;
pub mod parquet;
pub mod rows;
pub mod upkeep;

use std::time::Duration;

use chrono::NaiveDate;

use crate::config::pipeline::WriteMode;
use crate::query::DateRange;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkMetrics {
    /// Rows written.
    pub rows: u64,
    /// Files added.
    pub files_added: u64,
    /// Files removed (replaced partitions, overwritten tables).
    pub files_removed: u64,
    /// The table version committed (Delta only).
    pub version: Option<i64>,
    /// Time spent writing, including running the query that feeds the sink.
    pub elapsed: Duration,
}

/// Which existing rows a write replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replace {
    /// None: append.
    Nothing,
    /// Every row.
    Everything,
    /// Rows whose date column lies in `[start, end]`.
    DateRange {
        /// The date column (the first partition column).
        column: String,
        /// First day (inclusive).
        start: NaiveDate,
        /// Last day (inclusive).
        end: NaiveDate,
    },
}

impl Replace {
    /// What a job's write mode replaces for a run over `range`.
    pub fn for_run(mode: WriteMode, partition_by: &[String], range: DateRange) -> Self {
        match (mode, range, partition_by.first()) {
            (WriteMode::Append | WriteMode::Update, _, _) => Replace::Nothing,
            (WriteMode::Overwrite, _, _) | (WriteMode::ReplacePartitions, DateRange::All, _) => Replace::Everything,
            (WriteMode::ReplacePartitions, DateRange::Days { start, end }, Some(column)) => Replace::DateRange {
                column: column.clone(),
                start,
                end,
            },
            // The registry rejects replace_partitions without partition columns.
            (WriteMode::ReplacePartitions, DateRange::Days { .. }, None) => Replace::Everything,
        }
    }
}

impl std::fmt::Display for Replace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replace::Nothing => f.write_str("append"),
            Replace::Everything => f.write_str("replace the whole table"),
            Replace::DateRange { column, start, end } if start == end => {
                write!(f, "replace {column} = {start}")
            }
            Replace::DateRange { column, start, end } => {
                write!(f, "replace {column} in {start}..{end}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_modes_map_to_what_a_run_replaces() {
        let day = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        let one_day = DateRange::Days { start: day, end: day };
        let cols = vec!["event_date".to_string()];
        assert_eq!(Replace::for_run(WriteMode::Append, &cols, one_day), Replace::Nothing);
        assert_eq!(
            Replace::for_run(WriteMode::Overwrite, &cols, one_day),
            Replace::Everything
        );
        assert_eq!(
            Replace::for_run(WriteMode::ReplacePartitions, &cols, DateRange::All),
            Replace::Everything
        );
        let replace = Replace::for_run(WriteMode::ReplacePartitions, &cols, one_day);
        assert_eq!(replace.to_string(), "replace event_date = 2024-01-02");
    }
}
