//! Loading the generated users into a MySQL/MariaDB `users` table, so `bronze-users` can read
//! a real server. The rows are the very text of the CSV export.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::users::{User, user_row};
use crate::config::redact_url;
use crate::error::{Error, Result};

const CREATE_USERS: &str = include_str!("mysql_users.sql");
const INSERT_USERS: &str = include_str!("mysql_insert_users.sql");
const ROWS_PER_INSERT: usize = 500;

/// Recreates the `users` table at `url` and loads the users.
pub async fn load_users(url: &str, users: &[User]) -> Result<()> {
    let error = |message: String| Error::Sink {
        table: format!("{} table users", redact_url(url)),
        message,
        retryable: true,
        cause: None,
    };
    let opts = crate::mysql::options(url).map_err(error)?;
    let mut conn = Conn::new(opts)
        .await
        .map_err(|e| error(crate::mysql::cannot_connect(&e)))?;
    for statement in statements(CREATE_USERS) {
        conn.query_drop(statement).await.map_err(|e| error(e.to_string()))?;
    }
    let insert = statements(INSERT_USERS).next().expect("the insert statement");
    for chunk_start in (0..users.len()).step_by(ROWS_PER_INSERT) {
        let chunk_end = (chunk_start + ROWS_PER_INSERT).min(users.len());
        let groups = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk_end - chunk_start].join(", ");
        let params: Vec<Value> = (chunk_start..chunk_end)
            .flat_map(|i| user_row(users, i))
            .map(|cell| cell.map_or(Value::NULL, |text| Value::Bytes(text.into_bytes())))
            .collect();
        conn.exec_drop(insert.replace("{rows}", &groups), params)
            .await
            .map_err(|e| error(e.to_string()))?;
    }
    conn.disconnect().await.ok();
    Ok(())
}

/// The statements of a SQL file: comment lines dropped, split on `;` at line ends.
fn statements(text: &str) -> impl Iterator<Item = String> + '_ {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}
