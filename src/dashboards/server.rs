//! `serve`'s HTTP server: the dashboards page (`web/dashboards/`, embedded at build time with
//! the chart library), `/api/dashboards` (the list), `/api/dashboards/<name>` (a dashboard's
//! charts and defaults) and `/api/dashboards/<name>/<chart>?from=&to=&top=` (a chart's rows).
//! Read-only: chart queries run under options that refuse DDL, DML and statements. The lake's
//! tables (and, with `MYSQL_URL`, the MySQL mirror's as `mysql.<table>`) are registered again
//! when the session is older than [`SESSION_TTL`], so new commits (and new tables) show on the
//! next refresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::charts::{self, ChartParams};
use super::file::Dashboard;
use crate::catalog::Lake;
use crate::error::Result;
use crate::http::{Asset, SHARED_ASSETS, Server, text};
use crate::query::mysql_mirror::MysqlMirror;
use crate::repl::exec::lake_session;

/// Where `serve` listens unless `--listen` says (Streamlit's port: this replaces it).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8501";

/// How long one registration of the lake's tables serves requests.
pub const SESSION_TTL: Duration = Duration::from_secs(5);

/// The page and what it loads; `/` lists the dashboards, `/dashboards/<name>` shows one.
const PAGE: [Asset; 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/dashboards/index.html"),
    ),
    (
        "/ui/dashboards.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/dashboards/dashboards.js"),
    ),
    (
        "/ui/dashboards.css",
        "text/css; charset=utf-8",
        include_str!("../../web/dashboards/dashboards.css"),
    ),
];

struct Served {
    dashboards: Vec<Dashboard>,
    lake: Lake,
    mirror: Option<MysqlMirror>,
    session: Mutex<Option<(Instant, SessionContext)>>,
}

impl Served {
    /// A session over the lake's tables as of at most [`SESSION_TTL`] ago.
    async fn session(&self) -> Result<SessionContext> {
        let mut session = self.session.lock().await;
        if let Some((at, ctx)) = session.as_ref()
            && at.elapsed() < SESSION_TTL
        {
            return Ok(ctx.clone());
        }
        let ctx = lake_session(&self.lake).await?;
        if let Some(mirror) = &self.mirror {
            mirror.register(&ctx)?;
        }
        *session = Some((Instant::now(), ctx.clone()));
        Ok(ctx)
    }

    /// The dashboard `name`, or the message of the 404.
    fn dashboard(&self, name: &str) -> std::result::Result<&Dashboard, String> {
        self.dashboards.iter().find(|d| d.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.dashboards.iter().map(|d| d.name.as_str()).collect();
            format!("no dashboard {name:?} (there are: {})", names.join(", "))
        })
    }
}

/// Serves `dashboards` over `lake` (and the MySQL `mirror`, if any) on `listen` (or the next
/// free port).
pub async fn start(
    listen: SocketAddr,
    dashboards: Vec<Dashboard>,
    lake: Lake,
    mirror: Option<MysqlMirror>,
) -> Result<Server> {
    let served = Arc::new(Served {
        dashboards,
        lake,
        mirror,
        session: Mutex::new(None),
    });
    let index = PAGE[0];
    let app = Router::new()
        .route(
            "/dashboards/{name}",
            get(move || async move { ([(axum::http::header::CONTENT_TYPE, index.1)], index.2) }),
        )
        .route("/api/dashboards", get(list))
        .route("/api/dashboards/{name}", get(definition))
        .route("/api/dashboards/{name}/{chart}", get(chart))
        .fallback(not_found)
        .with_state(served);
    Server::start(listen, app, &[PAGE.as_slice(), SHARED_ASSETS.as_slice()].concat()).await
}

async fn list(State(served): State<Arc<Served>>) -> impl IntoResponse {
    let list: Vec<_> = served
        .dashboards
        .iter()
        .map(|d| json!({"name": d.name, "title": d.file.title, "description": d.file.description, "charts": d.file.charts.len()}))
        .collect();
    Json(list)
}

async fn definition(State(served): State<Arc<Served>>, Path(name): Path<String>) -> Response {
    match served.dashboard(&name) {
        Ok(d) => Json(json!({
            "name": d.name,
            "title": d.file.title,
            "description": d.file.description,
            "refresh_seconds": d.refresh.map(|r| r.as_secs_f64()),
            "range_seconds": d.range.map(|r| r.as_secs_f64()),
            "top": d.file.top,
            "charts": d.file.charts,
        }))
        .into_response(),
        Err(message) => text(StatusCode::NOT_FOUND, message),
    }
}

#[derive(Deserialize)]
struct ChartQuery {
    /// The time range's start (RFC 3339); absent: all time.
    from: Option<String>,
    /// Its end; absent: now.
    to: Option<String>,
    /// The N of a top-N chart.
    top: Option<usize>,
}

async fn chart(
    State(served): State<Arc<Served>>,
    Path((name, chart)): Path<(String, String)>,
    Query(query): Query<ChartQuery>,
) -> Response {
    let dashboard = match served.dashboard(&name) {
        Ok(dashboard) => dashboard,
        Err(message) => return text(StatusCode::NOT_FOUND, message),
    };
    let Some(def) = dashboard.chart(&chart) else {
        let names: Vec<&str> = dashboard.file.charts.iter().map(|c| c.name.as_str()).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "dashboard {name:?} has no chart {chart:?} (it has: {})",
                names.join(", ")
            ),
        );
    };
    let at = |given: &Option<String>, which: &str| match given.as_deref().filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|at| Some(at.to_utc()))
            .map_err(|e| format!("{which}={t:?}: {e} (RFC 3339, e.g. 2024-03-04T00:00:00Z)")),
    };
    let params = match (at(&query.from, "from"), at(&query.to, "to")) {
        (Ok(from), Ok(to)) => ChartParams {
            from,
            to,
            top: query.top.unwrap_or(dashboard.file.top).max(1),
        },
        (Err(message), _) | (_, Err(message)) => return text(StatusCode::BAD_REQUEST, message),
    };
    let answer = match served.session().await {
        Ok(ctx) => charts::run(&ctx, def, &params).await,
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(rows) => Json(rows).into_response(),
        // The page shows the error in the chart; the server goes on.
        Err(error) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("{}: chart `{}`: {error}", dashboard.path, def.name)})),
        )
            .into_response(),
    }
}

async fn not_found(request: Request) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!(
            "no {} here: serve answers /, /dashboards/<name>, /api/dashboards[/<name>[/<chart>]]",
            request.uri().path()
        ),
    )
}
