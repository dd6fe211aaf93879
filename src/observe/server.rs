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
    let app: Router<Served> = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/progress", get(progress))
        .route("/api/latest/{output}", get(latest_rows));
    let app = ASSETS
        .iter()
        .fold(app, |app, (path, content_type, body)| {
            app.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, *content_type)], *body) }),
            )
        })
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

/// The live page and what it loads, embedded at build time: path, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
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
    (
        "/ui/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/ui/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../web/vendor/uplot/uPlot.min.css"),
    ),
];

/// The cookie a browser keeps the token in after `?token=`.
const TOKEN_COOKIE: &str = "quickchat_ui_token";

async fn require_token(State(served): State<Served>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let Some(token) = &served.token else {
        return next.run(request).await;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| value.to_string());
    let in_query = request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    });
    if bearer == Some(token.as_str()) || cookie.as_deref() == Some(token.as_str()) {
        next.run(request).await
    } else if in_query.as_deref() == Some(token.as_str()) {
        let mut response = next.run(request).await;
        let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(value) = cookie.parse() {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{TOKEN_VARIABLE} is set: send Authorization: Bearer <token> (in a browser: ?token=<token>)\n"),
        )
            .into_response()
    }
}

async fn metrics(State(served): State<Served>) -> impl IntoResponse {
    let (text, content_type) = served.telemetry.exposition();
    ([(header::CONTENT_TYPE, content_type)], text)
}

async fn status(State(served): State<Served>) -> impl IntoResponse {
    Json(served.telemetry.status())
}

async fn latest_rows(State(served): State<Served>, Path(output): Path<String>) -> Response {
    let latest = served.telemetry.latest_rows();
    match latest.json(&output) {
        Some(rows) => Json(rows).into_response(),
        None => {
            let known: Vec<String> = latest.outputs().into_iter().map(|(_, output)| output).collect();
            (
                StatusCode::NOT_FOUND,
                format!("no output {output:?} in this run (its outputs: {})\n", known.join(", ")),
            )
                .into_response()
        }
    }
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
            "no {} here: the UI serves /, /metrics, /api/status, /api/progress and /api/latest/<output>\n",
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
