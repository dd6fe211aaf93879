//! The live UI's HTTP server, started by `run` beside a streaming pipeline: `/` (the live page,
//! from `web/live/`, embedded at build time with its chart library), `/metrics` (Prometheus),
//! `/api/status`, `/api/progress` (the last micro-batches) and `/api/latest/<output>` (what an
//! output last wrote) as JSON. Read-only; bound to loopback unless told otherwise; with
//! `QUICKCHAT_UI_TOKEN` set, every request needs the token: `Authorization: Bearer <token>`,
//! or `?token=<token>` once in a browser, which then keeps it in a cookie (as Jupyter does).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;

use super::telemetry::{RECENT_EPOCHS, Telemetry};
use crate::error::Result;
use crate::http::{Asset, CHART_LIBRARY, Server, text};

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
        .fallback(not_found)
        .with_state(telemetry);
    Server::start(listen, app, &[PAGE.as_slice(), CHART_LIBRARY.as_slice()].concat()).await
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

#[derive(Deserialize)]
struct ProgressQuery {
    /// How many of the last micro-batches.
    last: Option<usize>,
}

async fn progress(State(telemetry): State<Arc<Telemetry>>, Query(query): Query<ProgressQuery>) -> impl IntoResponse {
    Json(telemetry.recent(query.last.unwrap_or(RECENT_EPOCHS)))
}

async fn not_found(request: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no {} here: the UI serves /, /metrics, /api/status, /api/progress and /api/latest/<output>",
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
