//! The live UI's HTTP server, started by `run` beside a streaming pipeline: `/` (the live page,
//! from `web/live/`, embedded at build time with its chart library), `/metrics` (Prometheus),
//! `/api/status`, `/api/progress` (the last micro-batches) and `/api/latest/<output>` (what an
//! output last wrote) as JSON, and `/api/state[/<table>]` (what the operators hold: JSON, or
//! with `?format=arrow` an Arrow IPC stream). Read-only; bound to loopback unless told
//! otherwise; with `QUICKCHAT_UI_TOKEN` set, every request needs the token: `Authorization: Bearer <token>`,
//! or `?token=<token>` once in a browser, which then keeps it in a cookie (as Jupyter does).

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::live_state::{Answer, Question};
use super::telemetry::{RECENT_EPOCHS, Telemetry};
use crate::error::Result;
use crate::http::{Asset, SHARED_ASSETS, Server, text};
use crate::sinks::rows::rows_as_json_values;

/// Where the UI listens unless `--ui` or `[ui] listen` say (Spark's UI port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4040";

/// `[ui] listen` as an address, else [`DEFAULT_LISTEN`]; a bad one is a problem to report,
/// with the default to go on with.
pub fn listen_address(given: Option<&str>) -> std::result::Result<SocketAddr, (String, SocketAddr)> {
    crate::http::listen_address("[ui] listen", given, DEFAULT_LISTEN)
}

/// The live page and what it loads, embedded at build time.
const PAGE: [Asset; 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/live/index.html"),
    ),
    (
        "/ui/live.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/live/live.js"),
    ),
    (
        "/ui/live.css",
        "text/css; charset=utf-8",
        include_str!("../../web/live/live.css"),
    ),
];

/// Serves `telemetry` on `listen`, or on the next free port when it is taken (port 0: any
/// free port); dropping the server stops it.
pub async fn start(listen: SocketAddr, telemetry: Arc<Telemetry>) -> Result<Server> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/progress", get(progress))
        .route("/api/latest/{output}", get(latest_rows))
        .route("/api/state", get(state_tables))
        .route("/api/state/{table}", get(state_table))
        .fallback(not_found)
        .with_state(telemetry);
    Server::start(listen, app, &[PAGE.as_slice(), SHARED_ASSETS.as_slice()].concat()).await
}

async fn metrics(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    let (text, content_type) = telemetry.exposition();
    ([(header::CONTENT_TYPE, content_type)], text)
}

async fn status(State(telemetry): State<Arc<Telemetry>>) -> impl IntoResponse {
    Json(telemetry.status())
}

async fn latest_rows(State(telemetry): State<Arc<Telemetry>>, Path(output): Path<String>) -> Response {
    let latest = telemetry.latest_rows();
    match latest.json(&output) {
        Some(rows) => Json(rows).into_response(),
        None => {
            let known: Vec<String> = latest.outputs().into_iter().map(|(_, output)| output).collect();
            text(
                StatusCode::NOT_FOUND,
                format!("no output {output:?} in this run (its outputs: {})", known.join(", ")),
            )
        }
    }
}

async fn state_tables(State(telemetry): State<Arc<Telemetry>>) -> Response {
    match telemetry.live_state().ask(Question::List).await {
        Ok((epoch, Answer::List(tables))) => Json(json!({"epoch": epoch, "tables": tables})).into_response(),
        Ok((_, answer)) => unexpected(answer),
        Err(unanswered) => text(StatusCode::SERVICE_UNAVAILABLE, unanswered.to_string()),
    }
}

#[derive(Deserialize)]
struct StateQuery {
    /// `arrow` for an Arrow IPC stream (what `sql --attach` reads), else JSON.
    format: Option<String>,
    /// Rows at most: JSON answers [`STATE_JSON_ROWS`] unless told, Arrow every row.
    limit: Option<usize>,
}

/// Rows a JSON state table shows unless `?limit=` says otherwise.
const STATE_JSON_ROWS: usize = 1000;

/// The content type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The header an Arrow state table carries its epoch in.
pub const EPOCH_HEADER: &str = "x-quickchat-epoch";

async fn state_table(
    State(telemetry): State<Arc<Telemetry>>,
    Path(name): Path<String>,
    Query(query): Query<StateQuery>,
) -> Response {
    let (epoch, table) = match telemetry.live_state().ask(Question::Table(name.clone())).await {
        Ok((epoch, Answer::Table(Some(table)))) => (epoch, table),
        Ok((_, Answer::Table(None))) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no state table {name:?}: /api/state lists the open windows, sessions and join buffers"),
            );
        }
        Ok((_, answer)) => return unexpected(answer),
        Err(unanswered) => return text(StatusCode::SERVICE_UNAVAILABLE, unanswered.to_string()),
    };
    let rows = limited(&table.rows, query.limit);
    if query.format.as_deref() == Some("arrow") {
        return match arrow_stream(&table.schema, &rows) {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, ARROW_STREAM.to_string()),
                    (EPOCH_HEADER.parse().expect("a header name"), epoch.to_string()),
                ],
                bytes,
            )
                .into_response(),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("state table {name}: {e}")),
        };
    }
    let shown = limited(&rows, Some(query.limit.unwrap_or(STATE_JSON_ROWS)));
    let total: usize = table.rows.iter().map(RecordBatch::num_rows).sum();
    let shown_rows: usize = shown.iter().map(RecordBatch::num_rows).sum();
    match rows_as_json_values(&shown) {
        Ok(values) => Json(json!({
            "table": name,
            "operator": table.summary.operator,
            "epoch": epoch,
            "state_rows": table.summary.state_rows,
            "state_bytes": table.summary.state_bytes,
            "columns": table.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
            "rows": values,
            "total_rows": total,
            "truncated": shown_rows < total,
        }))
        .into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("state table {name}: {e}")),
    }
}

/// The first `limit` rows of `batches` (all without a limit).
fn limited(batches: &[RecordBatch], limit: Option<usize>) -> Vec<RecordBatch> {
    let mut left = limit.unwrap_or(usize::MAX);
    let mut kept = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        kept.push(batch.slice(0, take));
        left -= take;
    }
    kept
}

/// `rows` as an Arrow IPC stream of `schema` (the schema is there even without rows).
fn arrow_stream(schema: &SchemaRef, rows: &[RecordBatch]) -> std::result::Result<Vec<u8>, ArrowError> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    for batch in rows {
        writer.write(&RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?)?;
    }
    writer.finish()?;
    writer.into_inner()
}

/// An answer to another question than the one asked: a defect.
fn unexpected(answer: Answer) -> Response {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        match answer {
            Answer::Failed(message) => message,
            other => format!("the engine answered another question: {other:?}"),
        },
    )
}

#[derive(Deserialize)]
struct ProgressQuery {
    /// How many of the last micro-batches.
    last: Option<usize>,
    /// Only those after this batch id (what a page polling has not seen yet).
    since: Option<u64>,
}

async fn progress(State(telemetry): State<Arc<Telemetry>>, Query(query): Query<ProgressQuery>) -> impl IntoResponse {
    Json(telemetry.recent(query.last.unwrap_or(RECENT_EPOCHS), query.since))
}

async fn not_found(request: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no {} here: the UI serves /, /metrics, /api/status, /api/progress, /api/latest/<output>, \
             /api/state and /api/state/<table>",
            request.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_is_the_given_one_the_default_or_a_problem_naming_the_setting() {
        assert_eq!(listen_address(None).unwrap().to_string(), DEFAULT_LISTEN);
        assert_eq!(listen_address(Some("0.0.0.0:9000")).unwrap().port(), 9000);
        let (problem, default) = listen_address(Some("localhost")).unwrap_err();
        assert!(problem.starts_with("[ui] listen = \"localhost\""), "{problem}");
        assert_eq!(default.to_string(), DEFAULT_LISTEN);
    }
}
