//! The live UI's HTTP server, started by `run` beside a streaming pipeline: `/metrics`
//! (Prometheus), `/api/progress` (the last micro-batches as JSON). Read-only; bound to
//! loopback unless told otherwise; with `QUICKCHAT_UI_TOKEN` set, every request needs
//! `Authorization: Bearer <token>`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;

use super::telemetry::{RECENT_EPOCHS, Telemetry};
use crate::error::{Error, Result};

/// Where the UI listens unless `--ui` or `[ui] listen` say (Spark's UI port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4040";

/// `[ui] listen` as an address, else [`DEFAULT_LISTEN`]; a bad one is a problem to report,
/// with the default to go on with.
pub fn listen_address(given: Option<&str>) -> std::result::Result<SocketAddr, (String, SocketAddr)> {
    let default = DEFAULT_LISTEN.parse().expect("a valid default");
    match given {
        None => Ok(default),
        Some(text) => text.parse().map_err(|e| {
            (
                format!("[ui] listen = {text:?}: {e} (e.g. \"127.0.0.1:4040\")"),
                default,
            )
        }),
    }
}

/// Ports tried after the one asked for when it is taken.
const PORTS_TRIED: u16 = 20;

/// The environment variable holding the bearer token every request must carry, if set.
pub const TOKEN_VARIABLE: &str = "QUICKCHAT_UI_TOKEN";

#[derive(Clone)]
struct Served {
    telemetry: Arc<Telemetry>,
    token: Option<String>,
}

/// A running UI server; dropping it stops the server.
pub struct UiServer {
    /// The address it listens on.
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `telemetry` on `listen`, or on the next free port of the next [`PORTS_TRIED`] when
/// it is taken (port 0: any free port).
pub async fn start(listen: SocketAddr, telemetry: Arc<Telemetry>) -> Result<UiServer> {
    let listener = bind(listen).await?;
    let address = listener.local_addr().map_err(|e| Error::io(listen, e))?;
    let served = Served {
        telemetry,
        token: std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/progress", get(progress))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(served.clone(), require_token))
        .with_state(served);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the UI server stopped");
        }
    });
    Ok(UiServer { address, task })
}

async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    let last = if listen.port() == 0 {
        0
    } else {
        listen.port().saturating_add(PORTS_TRIED)
    };
    let mut port = listen.port();
    loop {
        let address = SocketAddr::new(listen.ip(), port);
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && port < last => port += 1,
            Err(e) => {
                return Err(Error::Usage(format!(
                    "cannot serve the UI on {address}: {e}{}; give another with --ui ADDR, or --no-ui",
                    if port > listen.port() {
                        format!(" (ports {} to {port} are taken)", listen.port())
                    } else {
                        String::new()
                    }
                )));
            }
        }
    }
}

async fn require_token(State(served): State<Served>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(token) = &served.token else {
        return next.run(request).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{TOKEN_VARIABLE} is set: send Authorization: Bearer <token>\n"),
        )
            .into_response()
    }
}

async fn metrics(State(served): State<Served>) -> impl IntoResponse {
    let (text, content_type) = served.telemetry.exposition();
    ([(header::CONTENT_TYPE, content_type)], text)
}

#[derive(Deserialize)]
struct ProgressQuery {
    /// How many of the last micro-batches.
    last: Option<usize>,
}

async fn progress(State(served): State<Served>, Query(query): Query<ProgressQuery>) -> impl IntoResponse {
    Json(served.telemetry.recent(query.last.unwrap_or(RECENT_EPOCHS)))
}

async fn not_found(request: Request) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        format!(
            "no {} here: the UI serves /metrics and /api/progress\n",
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
