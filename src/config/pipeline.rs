//! The pipeline file format: what a `pipelines/<job>.toml` may contain.
//!
//! These structs are the documented contract with users; each field's `///` line is its
//! documentation. Connectors are tagged enums (`kind = "..."`), one variant per kind. Strings
//! have already been through `${VAR}` expansion when they are deserialized here.

use indexmap::IndexMap;
use serde::Deserialize;

/// One pipeline file: a job with its sources, SQL, sink and expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// One sentence saying what the job produces; shown by `list`.
    pub description: String,
    /// The job's SQL file, relative to the project folder (e.g. `sql/silver/messages.sql`).
    pub sql: String,
    /// Jobs that must have run before this one (their sink tables are read by the SQL).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// External inputs, by the table name the SQL uses for them. Lake tables
    /// (`bronze.messages`, ...) are read by name in the SQL and need no declaration.
    #[serde(default)]
    pub sources: IndexMap<String, SourceDef>,
    /// Where the job's result goes.
    pub sink: SinkDef,
    /// Data-quality rules checked on every output row before it is written.
    #[serde(default)]
    pub expectations: Vec<ExpectationDef>,
}

/// An external input of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceDef {
    /// JSON lines as written by `mongoexport` (relaxed or canonical Extended JSON).
    MongoExport(FileSourceDef),
    /// Plain JSON lines, timestamps as ISO-8601 strings.
    JsonLines(FileSourceDef),
    /// CSV with a header row.
    Csv(FileSourceDef),
    /// A MySQL/MariaDB table, read through `MYSQL_URL`.
    Mysql(MysqlSourceDef),
}

impl SourceDef {
    /// The source's declared columns.
    pub fn columns(&self) -> &IndexMap<String, String> {
        match self {
            SourceDef::MongoExport(def) | SourceDef::JsonLines(def) | SourceDef::Csv(def) => &def.columns,
            SourceDef::Mysql(def) => &def.columns,
        }
    }

    /// The `kind` tag, as written in pipeline files.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceDef::MongoExport(_) => "mongo_export",
            SourceDef::JsonLines(_) => "json_lines",
            SourceDef::Csv(_) => "csv",
            SourceDef::Mysql(_) => "mysql",
        }
    }
}

/// A file-based source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceDef {
    /// A file or a folder of files: relative to the lake root, an absolute path, or a URL
    /// (`s3://...`).
    pub path: String,
    /// The columns to read, `name = "type"` in order; other fields in the file are ignored.
    pub columns: IndexMap<String, String>,
}

/// A MySQL table source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceDef {
    /// The table to read, whole.
    pub table: String,
    /// The columns to read, `name = "type"` in order.
    pub columns: IndexMap<String, String>,
    /// A CSV export of the same table, read instead when no MySQL URL is configured
    /// (this is how the demo runs without a server).
    #[serde(default)]
    pub csv_export: Option<String>,
}

/// Where a job's result goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkDef {
    /// A Delta table in the lake, readable by later jobs as `<layer>.<table>`.
    Delta(DeltaSinkDef),
    /// Parquet files (an export for consumers without a Delta reader).
    Parquet(ParquetSinkDef),
}

impl SinkDef {
    /// Partition columns of the sink.
    pub fn partition_by(&self) -> &[String] {
        match self {
            SinkDef::Delta(def) => &def.partition_by,
            SinkDef::Parquet(def) => &def.partition_by,
        }
    }

    /// How a run replaces earlier data.
    pub fn write_mode(&self) -> WriteMode {
        match self {
            SinkDef::Delta(def) => def.write,
            SinkDef::Parquet(def) => def.write,
        }
    }
}

/// A Delta table sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSinkDef {
    /// `<layer>.<table>`, e.g. `silver.messages`; stored at `<lake>/<layer>/<table>`.
    pub table: String,
    /// Partition columns; with `write = "replace_partitions"` the first must be a date.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// How a run replaces earlier data.
    pub write: WriteMode,
}

/// A Parquet files sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkDef {
    /// Output folder: relative to the lake root, an absolute path, or a URL.
    pub path: String,
    /// Partition columns (Hive-style `col=value/` folders); with `replace_partitions` the first
    /// must be a date.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// How a run replaces earlier data.
    pub write: WriteMode,
}

/// How a run replaces what earlier runs wrote. Every mode but `append` is idempotent: running
/// the same job for the same dates once or five times leaves the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Replace the rows whose first partition column (a date) lies in the run's date range;
    /// a run without `--date`/`--from` replaces the whole table.
    ReplacePartitions,
    /// Replace the whole table on every run (snapshot tables such as `silver.users`).
    Overwrite,
    /// Add rows (logs); not idempotent.
    Append,
}

/// A data-quality rule, as in Delta Live Tables' expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationDef {
    /// Rule name, recorded with every violating row in the quarantine table.
    pub name: String,
    /// A SQL boolean expression over the output columns that good rows satisfy. A row for
    /// which it is false *or null* violates the rule.
    pub condition: String,
    /// What to do with a violating row.
    pub on_violation: OnViolation,
}

/// What happens to a row that violates an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// Keep it out of the sink and put it in the quarantine table with the rule name.
    Drop,
    /// Write nothing and end the job with the data-quality exit code (5); the violating rows
    /// are put in the quarantine table for inspection.
    Fail,
    /// Keep it in the sink; count and log it.
    Warn,
}

impl OnViolation {
    /// The name used in pipeline files, logs and the run log.
    pub fn as_str(self) -> &'static str {
        match self {
            OnViolation::Drop => "drop",
            OnViolation::Fail => "fail",
            OnViolation::Warn => "warn",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        description = "x"
        sql = "sql/bronze/x.sql"
        [sources.raw]
        kind = "mongo_export"
        path = "landing/x.json"
        columns = { _id = "string", n = "int64" }
        [sink]
        kind = "delta"
        table = "bronze.x"
        partition_by = ["event_date"]
        write = "replace_partitions"
        [[expectations]]
        name = "id_present"
        condition = "id IS NOT NULL"
        on_violation = "drop"
    "#;

    #[test]
    fn parses_a_complete_pipeline_file() {
        let file: PipelineFile = toml::from_str(EXAMPLE).unwrap();
        assert!(matches!(file.sources["raw"], SourceDef::MongoExport(_)));
        assert_eq!(file.sources["raw"].columns().len(), 2);
        assert_eq!(file.sink.write_mode(), WriteMode::ReplacePartitions);
        assert_eq!(file.expectations[0].on_violation, OnViolation::Drop);
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected() {
        let typo = EXAMPLE.replace("partition_by", "partition_on");
        assert!(toml::from_str::<PipelineFile>(&typo).is_err());
        let kind = EXAMPLE.replace("\"mongo_export\"", "\"oracle\"");
        let err = toml::from_str::<PipelineFile>(&kind).unwrap_err().to_string();
        assert!(err.contains("oracle"), "{err}");
    }
}
