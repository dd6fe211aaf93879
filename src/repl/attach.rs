//! `sql --attach URL`: a running pipeline's state — its open windows, sessions, running groups
//! and join buffers, served by its live UI at `/api/state` — as tables `live.<table>` next to
//! the lake's. Each query reads a table afresh (an Arrow IPC stream), as of the pipeline's last
//! committed micro-batch; the list of tables is the one at attach time.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use url::Url;

use crate::catalog::CATALOG;
use crate::error::{Error, Result};
use crate::http::TOKEN_VARIABLE;

/// The schema the state tables are registered in.
pub const LIVE_SCHEMA: &str = "live";

/// Registers the state tables of the pipeline whose live UI is at `url` as `live.<table>`;
/// returns their names.
pub async fn attach(ctx: &SessionContext, url: &str) -> Result<Vec<String>> {
    let ui = Arc::new(LiveUi::new(url)?);
    let listed: Listing = serde_json::from_slice(&ui.get("api/state", &[]).await?)
        .map_err(|e| ui.error(format!("/api/state did not answer a state list: {e}")))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    let mut names = Vec::new();
    for table in listed.tables {
        // The columns, without the rows.
        let (columns, _) = ui.table(&table.name, Some(0)).await?;
        let provider = LiveTable {
            ui: ui.clone(),
            name: table.name.clone(),
            schema: columns,
        };
        schema
            .register_table(table.name.clone(), Arc::new(provider))
            .map_err(|e| ui.error(e.to_string()))?;
        names.push(table.name);
    }
    ctx.catalog(CATALOG)
        .expect("the default catalog exists")
        .register_schema(LIVE_SCHEMA, schema)
        .map_err(|e| ui.error(e.to_string()))?;
    Ok(names)
}

/// `/api/state`'s answer, as far as attaching needs it.
#[derive(Deserialize)]
struct Listing {
    tables: Vec<ListedTable>,
}

#[derive(Deserialize)]
struct ListedTable {
    name: String,
}

/// A pipeline's live UI.
#[derive(Debug)]
struct LiveUi {
    base: Url,
    client: reqwest::Client,
    /// `QUICKCHAT_UI_TOKEN`, sent as a bearer token when set (a `?token=` in the URL is kept too).
    token: Option<String>,
}

impl LiveUi {
    fn new(url: &str) -> Result<Self> {
        let mut base =
            Url::parse(url).map_err(|e| Error::Usage(format!("--attach {url}: {e} (e.g. http://127.0.0.1:4040)")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            base,
            client: reqwest::Client::new(),
            token: std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()),
        })
    }

    fn error(&self, message: String) -> Error {
        let mut shown = self.base.clone();
        shown.set_query(None);
        Error::Source {
            source_name: LIVE_SCHEMA.into(),
            location: shown.to_string(),
            message,
            retryable: true,
            cause: None,
        }
    }

    /// The body of `GET <base><path>?<query>`; an error naming the URL unless it answers 200.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<bytes::Bytes> {
        let mut url = self.base.join(path).map_err(|e| self.error(e.to_string()))?;
        let kept: Vec<(String, String)> = self.base.query_pairs().into_owned().collect();
        url.query_pairs_mut()
            .extend_pairs(kept)
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let mut request = self.client.get(url.clone()).timeout(std::time::Duration::from_secs(60));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.error(format!("is the pipeline running with its live UI here? {e}")))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.error(e.to_string()))?;
        if !status.is_success() {
            return Err(self.error(format!(
                "/{path} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(body)
    }

    /// A state table's columns and rows (the first `limit` rows, all without a limit).
    async fn table(&self, name: &str, limit: Option<usize>) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut query = vec![("format", "arrow".to_string())];
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let body = self.get(&format!("api/state/{name}"), &query).await?;
        let unreadable =
            |e: arrow::error::ArrowError| self.error(format!("state table {name}: not an Arrow stream: {e}"));
        let reader = StreamReader::try_new(std::io::Cursor::new(body), None).map_err(unreadable)?;
        let schema = reader.schema();
        let rows = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(unreadable)?;
        Ok((schema, rows))
    }
}

/// A state table: read from the live UI each time a query scans it.
#[derive(Debug)]
struct LiveTable {
    ui: Arc<LiveUi>,
    name: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let (schema, rows) = self
            .ui
            .table(&self.name, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if schema.fields() != self.schema.fields() {
            return Err(DataFusionError::Plan(format!(
                "live.{}: its columns changed since --attach (the pipeline restarted with other SQL?); attach again",
                self.name
            )));
        }
        let rows = rows
            .into_iter()
            .map(|batch| RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        MemTable::try_new(self.schema.clone(), vec![rows])?
            .scan(state, projection, filters, limit)
            .await
    }
}
