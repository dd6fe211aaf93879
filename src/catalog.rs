//! The lake: where tables live, reaching files under it (local or S3), finding its Delta
//! tables, reading them (opening a table, its DataFusion provider, the epochs a stream recorded
//! in it) and registering them in a DataFusion session as `<layer>.<table>`. Writing them is
//! `sinks::delta`'s: deltalake is called from these two files only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::prelude::SessionContext;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::config::LakeLocation;
use crate::error::{Error, Result};

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

/// The catalog name DataFusion sessions use; layers are its schemas.
pub const CATALOG: &str = "datafusion";

/// A lake root and the object stores that reach it.
#[derive(Debug)]
pub struct Lake {
    location: LakeLocation,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Lake {
    /// A lake at the given location; nothing is touched until used.
    pub fn new(location: LakeLocation) -> Self {
        crate::sinks::delta::register_stores();
        Self {
            location,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// A lake in a new temporary folder, for tests; the folder goes when the guard drops.
    #[cfg(test)]
    pub fn temporary() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let location = LakeLocation::parse(dir.path().to_str().expect("a UTF-8 path"), HashMap::new())
            .expect("a folder is a lake location");
        (dir, Self::new(location))
    }

    /// The lake's location and storage options.
    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// The lake root URL.
    pub fn root(&self) -> &Url {
        &self.location.root
    }

    /// The folder URL of a lake table.
    pub fn table_url(&self, table: &TableName) -> Url {
        self.location
            .root
            .join(&table.relative_path())
            .expect("table paths are valid URL paths")
    }

    /// The object store and the path within it for a URL (cached per bucket).
    pub fn object_store(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let (store, path) =
            object_store::parse_url_opts(url, self.location.storage_options.clone()).map_err(|e| Error::Lake {
                location: url.to_string(),
                message: e.to_string(),
            })?;
        let mut stores = self.stores.lock().expect("object store cache lock");
        let store = stores.entry(key).or_insert_with(|| Arc::from(store)).clone();
        Ok((store, path))
    }

    /// Every Delta table in the lake: `<root>/<layer>/<table>/_delta_log/` folders.
    pub async fn list_tables(&self) -> Result<Vec<TableName>> {
        let (store, root) = self.object_store(&self.location.root)?;
        let lake_error = |e: object_store::Error| Error::Lake {
            location: self.location.root.to_string(),
            message: format!("listing tables: {e}"),
        };
        let mut tables = Vec::new();
        let layers = match store.list_with_delimiter(Some(&root)).await {
            Ok(listing) => listing.common_prefixes,
            // A local lake folder that does not exist yet simply has no tables.
            Err(object_store::Error::NotFound { .. }) => return Ok(tables),
            Err(e) => return Err(lake_error(e)),
        };
        for layer in layers {
            let Some(layer_name) = layer.filename().filter(|n| is_identifier(n)) else {
                continue;
            };
            for table in store
                .list_with_delimiter(Some(&layer))
                .await
                .map_err(lake_error)?
                .common_prefixes
            {
                let Some(table_name) = table.filename().filter(|n| is_identifier(n)) else {
                    continue;
                };
                let log = table.clone().join("_delta_log");
                let mut entries = store.list(Some(&log));
                if entries.try_next().await.map_err(lake_error)?.is_some() {
                    tables.push(TableName {
                        layer: layer_name.to_string(),
                        table: table_name.to_string(),
                    });
                }
            }
        }
        tables.sort();
        Ok(tables)
    }

    /// Registers every Delta table of the lake in the session as `<layer>.<table>`, creating
    /// one schema per layer; returns the names registered.
    pub async fn register_all(&self, ctx: &SessionContext) -> Result<Vec<TableName>> {
        let tables = self.list_tables().await?;
        for table in &tables {
            let provider = table_provider(self, table, ctx).await?;
            layer_schema(ctx, &table.layer)
                .register_table(table.table.clone(), provider)
                .map_err(|e| Error::Lake {
                    location: self.table_url(table).to_string(),
                    message: e.to_string(),
                })?;
        }
        Ok(tables)
    }
}

/// Opens a lake table; `None` when there is no Delta table there yet.
pub async fn open(lake: &Lake, table: &TableName) -> Result<Option<DeltaTable>> {
    let url = lake.table_url(table);
    // deltalake refuses a local folder that does not exist rather than reporting no table.
    if let Ok(path) = url.to_file_path()
        && !path.join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let opened = DeltaTable::try_from_url_with_storage_options(url.clone(), lake.location().storage_options.clone())
        .await
        .map_err(|e| lake_error(table, lake, e))?;
    Ok(opened.version().is_some().then_some(opened))
}

/// A DataFusion provider reading the table's current version, with the session's scan settings
/// (strings as Utf8, see [`crate::query::new_session`]); the table's object store is registered
/// with the session so scans can reach it.
pub async fn table_provider(lake: &Lake, table: &TableName, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
    let opened = open(lake, table).await?.ok_or_else(|| Error::Lake {
        location: lake.table_url(table).to_string(),
        message: format!("{table} is not a Delta table"),
    })?;
    opened
        .update_datafusion_session(&ctx.state())
        .map_err(|e| lake_error(table, lake, e))?;
    opened
        .table_provider()
        .with_session(Arc::new(ctx.state()))
        .await
        .map_err(|e| Error::Lake {
            location: lake.table_url(table).to_string(),
            message: e.to_string(),
        })
}

/// The last version application `app_id` recorded in the table (with
/// [`DeltaSink::with_app_transaction`]); `None` when it never wrote there.
pub async fn app_transaction_version(lake: &Lake, table: &TableName, app_id: &str) -> Result<Option<i64>> {
    let Some(opened) = open(lake, table).await? else {
        return Ok(None);
    };
    let snapshot = opened.snapshot().map_err(|e| lake_error(table, lake, e))?;
    snapshot
        .transaction_version(opened.log_store().as_ref(), app_id)
        .await
        .map_err(|e| lake_error(table, lake, e))
}

fn lake_error(table: &TableName, lake: &Lake, e: DeltaTableError) -> Error {
    Error::Lake {
        location: format!("{} ({table})", lake.table_url(table)),
        message: e.to_string(),
    }
}

/// The schema of a layer in the session, created when missing.
pub fn layer_schema(ctx: &SessionContext, layer: &str) -> Arc<dyn SchemaProvider> {
    let catalog = ctx.catalog(CATALOG).expect("the default catalog exists");
    match catalog.schema(layer) {
        Some(schema) => schema,
        None => {
            let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog
                .register_schema(layer, schema.clone())
                .expect("memory catalogs accept schemas");
            schema
        }
    }
}

fn is_identifier(name: &str) -> bool {
    TableName::parse(&format!("{name}.x")).is_ok()
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
