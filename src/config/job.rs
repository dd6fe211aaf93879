//! A batch pipeline file resolved and checked: a [`Job`] with its sources' schemas, its SQL
//! text and its sink (a lake table, a Parquet folder or a MongoDB collection).

use arrow::datatypes::SchemaRef;

use super::columns::schema_from_columns;
use super::pipeline::{ExpectationDef, PipelineFile, SinkDef, SourceDef, WriteMode};
use crate::catalog::TableName;
use crate::error::ConfigProblem;
use crate::project::Project;

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
    /// How the sink replaces earlier runs' rows.
    pub write_mode: WriteMode,
    /// The sink's lake table, for Delta sinks.
    pub sink_table: Option<TableName>,
    /// Data-quality rules.
    pub expectations: Vec<ExpectationDef>,
}

impl Job {
    /// The sink as shown to users: a table name or a path.
    pub fn sink_display(&self) -> String {
        match &self.sink_table {
            Some(table) => table.to_string(),
            None => self.sink.display(),
        }
    }

    /// Resolves and checks a parsed batch pipeline file (`name`, shown as `path`); lists every
    /// problem found.
    pub fn resolve(name: &str, path: &str, def: PipelineFile, project: &Project) -> Result<Job, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut problem = |message: String| problems.push(ConfigProblem::in_file(path, message));
        let sql = project.read(&def.sql).map_err(|e| problem(format!("sql: {e}"))).ok();

        let mut sources = Vec::new();
        for (source_name, source) in &def.sources {
            if let SourceDef::Kafka(_) = source {
                problem(format!(
                    "sources.{source_name}: a `kafka` source belongs in a streaming pipeline (`mode = \"streaming\"`)"
                ));
                continue;
            }
            if let SourceDef::Mongodb(mongo) = source
                && let Some(field) = &mongo.date_field
            {
                let declared = mongo
                    .columns
                    .get(field)
                    .map(|t| t.split_whitespace().next().unwrap_or(""));
                if !matches!(declared, Some("timestamp" | "date")) {
                    problem(format!(
                        "sources.{source_name}: date_field `{field}` must be a declared `timestamp` or `date` column"
                    ));
                }
            }
            match schema_from_columns(source.columns()) {
                Ok(schema) => sources.push(Source {
                    name: source_name.clone(),
                    def: source.clone(),
                    schema,
                }),
                Err(column_problems) => column_problems
                    .into_iter()
                    .for_each(|p| problem(format!("sources.{source_name}: {p}"))),
            }
        }

        let (sink_table, layer) = match &def.sink {
            SinkDef::Delta(delta) => match TableName::parse(&delta.table) {
                Ok(table) if table.layer == "meta" => {
                    problem(format!("sink.table: the `meta` layer is reserved ({table})"));
                    (None, String::new())
                }
                Ok(table) => {
                    let layer = table.layer.clone();
                    (Some(table), layer)
                }
                Err(message) => {
                    problem(format!("sink.table: {message}"));
                    (None, String::new())
                }
            },
            SinkDef::Parquet(_) => (None, "export".to_string()),
            SinkDef::Mongodb(mongo) => {
                if let Some(message) = mongo.name_problem() {
                    problem(format!("sink: {message}"));
                }
                if mongo.optional {
                    problem("sink: a batch job's MongoDB sink cannot be optional: it is the job's only output".into());
                }
                (None, "export".to_string())
            }
            other => {
                problem(format!(
                    "sink: a batch job writes a `delta`, `parquet` or `mongodb` sink; `{}` sinks are for streaming outputs",
                    other.kind()
                ));
                (None, String::new())
            }
        };
        let write_mode = match def.sink.declared_mode() {
            Some(mode @ (WriteMode::ReplacePartitions | WriteMode::Overwrite | WriteMode::Append)) => mode,
            Some(WriteMode::Update) => {
                problem(
                    "sink: mode = \"update\" is for streaming outputs; a batch job replaces partitions \
                         (`replace_partitions`), the whole table (`overwrite`) or appends (`append`)"
                        .into(),
                );
                WriteMode::Append
            }
            None => {
                problem(
                    "sink: say how a run replaces earlier rows: mode = \"replace_partitions\", \
                         \"overwrite\" or \"append\""
                        .into(),
                );
                WriteMode::Append
            }
        };
        if write_mode == WriteMode::ReplacePartitions && def.sink.partition_by().is_empty() {
            problem("sink: mode = \"replace_partitions\" needs partition_by with a date column first".into());
        }

        let mut rule_names = std::collections::HashSet::new();
        for rule in &def.expectations {
            if !rule_names.insert(rule.name.as_str()) {
                problem(format!("expectation `{}` is defined twice", rule.name));
            }
            if rule.condition.trim().is_empty() {
                problem(format!("expectation `{}` has an empty condition", rule.name));
            }
        }
        if def.depends_on.iter().any(|d| d == name) {
            problem("a job cannot depend on itself".into());
        }

        match (problems.is_empty(), sql) {
            (true, Some(sql)) => Ok(Job {
                name: name.to_string(),
                layer,
                description: def.description,
                pipeline_path: path.to_string(),
                sql_path: def.sql,
                sql,
                depends_on: def.depends_on,
                sources,
                sink: def.sink,
                write_mode,
                sink_table,
                expectations: def.expectations,
            }),
            _ => Err(problems),
        }
    }
}
