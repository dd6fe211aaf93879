//! Jobs: pipeline files resolved into runnable [`Job`]s, the dependency graph between them,
//! and the batch runner.

pub mod graph;
pub mod planner;
pub mod registry;
pub mod runner;

use std::fmt;

use arrow::datatypes::SchemaRef;

use crate::config::pipeline::{ExpectationDef, SinkDef, SourceDef};
pub use registry::Registry;

/// A lake table name, `<layer>.<table>`, stored at `<lake>/<layer>/<table>/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The layer (`bronze`, `silver`, `gold`, `meta`, ...), a SQL schema name.
    pub layer: String,
    /// The table within the layer.
    pub table: String,
}

impl TableName {
    /// Parses `layer.table`; both parts must be lower-case SQL identifiers.
    pub fn parse(text: &str) -> Result<Self, String> {
        let is_identifier = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        match text.split_once('.') {
            Some((layer, table)) if is_identifier(layer) && is_identifier(table) => Ok(Self {
                layer: layer.to_string(),
                table: table.to_string(),
            }),
            _ => Err(format!(
                "table `{text}` must be `<layer>.<table>` in lower-case letters, digits and _, \
                 e.g. `silver.messages`"
            )),
        }
    }

    /// A name in the internal `meta` layer (run log, quarantine).
    pub fn meta(table: &str) -> Self {
        Self {
            layer: "meta".to_string(),
            table: table.to_string(),
        }
    }

    /// The table's folder relative to the lake root, with a trailing slash.
    pub fn relative_path(&self) -> String {
        format!("{}/{}/", self.layer, self.table)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.table)
    }
}

/// An external source of a job, with its declared schema.
#[derive(Debug, Clone)]
pub struct Source {
    /// The table name the SQL uses for it.
    pub name: String,
    /// How to read it.
    pub def: SourceDef,
    /// The declared columns as an Arrow schema.
    pub schema: SchemaRef,
}

/// A job: one pipeline file, resolved and checked.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job name (pipeline file name without `.toml`).
    pub name: String,
    /// The layer the job writes: the sink table's layer, or `export` for Parquet sinks.
    pub layer: String,
    /// What the job produces.
    pub description: String,
    /// The pipeline file, for messages.
    pub pipeline_path: String,
    /// The SQL file, relative to the project folder.
    pub sql_path: String,
    /// The SQL text.
    pub sql: String,
    /// Jobs that must run first.
    pub depends_on: Vec<String>,
    /// External sources.
    pub sources: Vec<Source>,
    /// Where the result goes.
    pub sink: SinkDef,
    /// The sink's lake table, for Delta sinks.
    pub sink_table: Option<TableName>,
    /// Data-quality rules.
    pub expectations: Vec<ExpectationDef>,
}

impl Job {
    /// The sink as shown to users: a table name or a path.
    pub fn sink_display(&self) -> String {
        match (&self.sink, &self.sink_table) {
            (_, Some(table)) => table.to_string(),
            (SinkDef::Parquet(def), None) => format!("parquet:{}", def.path),
            (SinkDef::Delta(def), None) => def.table.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_layer_dot_table() {
        let name = TableName::parse("silver.user_activity").unwrap();
        assert_eq!(name.relative_path(), "silver/user_activity/");
        assert_eq!(name.to_string(), "silver.user_activity");
        for bad in ["messages", "Silver.messages", "a.b.c", "gold.", "1x.y"] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
    }
}
