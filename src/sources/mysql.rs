//! MySQL/MariaDB table source: the declared columns of a table, read through the text
//! protocol row by row (streamed from the server, never held whole) and handed on as text
//! cells to a [`TableRows`] (the decoder converts them exactly as it converts the cells of a
//! CSV export, so a MySQL table and its export give identical batches).

use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use crate::config::job::Source;
use crate::config::redact_url;
use crate::error::{Error, Result};

const SELECT_TABLE: &str = include_str!("mysql_select.sql");

/// Receives a table's rows as they are read.
#[async_trait::async_trait]
pub trait TableRows: Send {
    /// Row `row` (from 1, in the order read; located as row `row` of [`row_origin`]): its text
    /// cells in column order, `None` for NULL. Returns false to stop reading.
    async fn row(&mut self, row: u64, cells: &[Option<&[u8]>]) -> bool;
}

/// How rows of `table` are named in messages and the quarantine: `mysql:<table>`.
pub fn row_origin(table: &str) -> String {
    format!("mysql:{table}")
}

/// Reads the declared columns of `table` from the database at `url` into `into`, row by row.
pub async fn read_table(source: &Source, table: &str, url: &str, into: &mut dyn TableRows) -> Result<()> {
    let location = format!("{} table {table}", redact_url(url));
    let source_error = |message: String, retryable: bool| Error::Source {
        source_name: source.name.clone(),
        location: location.clone(),
        message,
        retryable,
        cause: None,
    };
    let mut identifiers = source.schema.fields().iter().map(|f| f.name().as_str()).chain([table]);
    if let Some(bad) = identifiers.find(|name| !is_plain_identifier(name)) {
        return Err(source_error(format!("`{bad}` is not a plain MySQL identifier"), false));
    }
    let opts = crate::mysql::options(url).map_err(|message| source_error(message, false))?;
    let mut conn = Conn::new(opts)
        .await
        .map_err(|e| source_error(crate::mysql::cannot_connect(&e), true))?;
    let columns = source
        .schema
        .fields()
        .iter()
        .map(|f| format!("`{}`", f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let query = statement(SELECT_TABLE)
        .replace("{columns}", &columns)
        .replace("{table}", &format!("`{table}`"));

    let mut rows = conn
        .query_iter(query)
        .await
        .map_err(|e| query_error(&source_error, e))?;
    let mut stream = rows.stream::<Row>().await.map_err(|e| query_error(&source_error, e))?;
    let mut row_number = 0u64;
    if let Some(stream) = stream.as_mut() {
        while let Some(row) = stream.try_next().await.map_err(|e| query_error(&source_error, e))? {
            row_number += 1;
            let cells: Vec<Option<&[u8]>> = (0..row.len())
                .map(|i| match row.as_ref(i) {
                    Some(Value::Bytes(bytes)) => Some(bytes.as_slice()),
                    _ => None,
                })
                .collect();
            if !into.row(row_number, &cells).await {
                break;
            }
        }
    }
    drop(stream);
    drop(rows);
    conn.disconnect().await.ok();
    Ok(())
}

fn query_error(source_error: &dyn Fn(String, bool) -> Error, e: mysql_async::Error) -> Error {
    let retryable = matches!(e, mysql_async::Error::Io(_) | mysql_async::Error::Driver(_));
    source_error(e.to_string(), retryable)
}

/// Whether `name` can be back-quoted into a statement as is (letters, digits, `_`).
pub(crate) fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A statement from one of the project's `.sql` templates, without its comment lines.
pub(crate) fn statement(template: &str) -> String {
    template
        .lines()
        .filter(|line| !line.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}
