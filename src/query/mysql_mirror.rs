//! The MySQL mirror as tables: with `MYSQL_URL` set, every table a streaming pipeline's `mysql`
//! sink writes is `mysql.<table>` next to the lake's tables, in `sql` and in `serve`'s
//! dashboards. An update-mode mirror holds the open windows' current values, which the gold
//! tables (closed windows only) do not have yet. A query reads the table afresh through the
//! MySQL source of batch jobs (streamed, each cell decoded as its CSV export would be), with the
//! output's columns; a row that does not decode is logged and left out of the answer.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::prelude::SessionContext;
use indexmap::IndexMap;

use crate::catalog::{CATALOG, TableName};
use crate::config::job::Source;
use crate::config::pipeline::{MysqlSourceDef, SinkDef};
use crate::error::{Error, Result};
use crate::jobs::Registry;
use crate::query::source_table::source_table;
use crate::sources::BoundedInput;
use crate::stream::operator::Query;
use crate::stream::outputs::plan;

/// The schema the mirrored tables are registered in.
pub const MYSQL_SCHEMA: &str = "mysql";

/// The tables a pipeline's `queries` mirror to MySQL, as `mysql.<table>`, with their columns.
pub fn mirrored_by(queries: &[Query]) -> Vec<(TableName, SchemaRef)> {
    queries
        .iter()
        .flat_map(|query| {
            query.output.sinks.iter().filter_map(|sink| match sink {
                SinkDef::Mysql(mysql) => Some((
                    TableName {
                        layer: MYSQL_SCHEMA.into(),
                        table: mysql.table.clone(),
                    },
                    query.analysis.schema.clone(),
                )),
                _ => None,
            })
        })
        .collect()
}

/// The MySQL mirror of a project's streaming pipelines.
#[derive(Debug, Clone)]
pub struct MysqlMirror {
    url: String,
    tables: Vec<(TableName, SchemaRef)>,
}

impl MysqlMirror {
    /// The tables the pipelines of `registry` mirror to the database at `url` (a pipeline that
    /// does not plan is left out: `validate` names its problem).
    pub async fn of(registry: &Registry, url: &str) -> Self {
        let mut tables = Vec::new();
        for pipeline in registry.streams() {
            if let Ok((queries, _)) = plan(pipeline).await {
                tables.extend(mirrored_by(&queries));
            }
        }
        tables.sort_by(|a, b| a.0.table.cmp(&b.0.table));
        tables.dedup_by(|a, b| a.0 == b.0);
        Self {
            url: url.to_string(),
            tables,
        }
    }

    /// The mirrored tables' names.
    pub fn names(&self) -> impl Iterator<Item = &TableName> {
        self.tables.iter().map(|(name, _)| name)
    }

    /// Registers the mirrored tables in `ctx` as `mysql.<table>`.
    pub fn register(&self, ctx: &SessionContext) -> Result<()> {
        if self.tables.is_empty() {
            return Ok(());
        }
        let internal = |e: datafusion::error::DataFusionError| Error::Internal(format!("the MySQL mirror: {e}"));
        let schema = Arc::new(MemorySchemaProvider::new());
        for (name, columns) in &self.tables {
            let source = Source {
                name: name.to_string(),
                def: crate::config::pipeline::SourceDef::Mysql(MysqlSourceDef {
                    table: name.table.clone(),
                    columns: IndexMap::new(),
                    csv_export: None,
                }),
                schema: crate::decode::text_table::nullable(columns),
            };
            let input = BoundedInput::Mysql {
                table: name.table.clone(),
                url: self.url.clone(),
            };
            let (table, _read) = source_table(&source, input)?;
            schema
                .register_table(name.table.clone(), Arc::new(table))
                .map_err(internal)?;
        }
        ctx.catalog(CATALOG)
            .expect("the default catalog exists")
            .register_schema(MYSQL_SCHEMA, schema)
            .map_err(internal)?;
        Ok(())
    }
}
