//! What the two HTTP servers — the live UI beside a streaming run ([`crate::observe::server`])
//! and `serve`'s dashboards ([`crate::dashboards::server`]) — share: binding to an address or
//! the next free port, the optional bearer token (`QUICKCHAT_UI_TOKEN`), the embedded web
//! files (`web/`, built into the binary), and plain-text errors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{Error, Result};

/// Ports tried after the one asked for when it is taken.
const PORTS_TRIED: u16 = 20;

/// The environment variable holding the bearer token every request must carry, if set.
pub const TOKEN_VARIABLE: &str = "QUICKCHAT_UI_TOKEN";

/// The cookie a browser keeps the token in after `?token=`.
const TOKEN_COOKIE: &str = "quickchat_ui_token";

/// A web file built into the binary: the path it is served at, its content type, its text.
pub type Asset = (&'static str, &'static str, &'static str);

/// What both pages load: the chart library they draw with — uPlot, copied from the npm
/// package `web/package-lock.json` pins (`scripts/vendor-web.sh`) — and `web/common/api.js`,
/// their one way of fetching the server's JSON.
pub const SHARED_ASSETS: [Asset; 3] = [
    (
        "/ui/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/ui/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../web/vendor/uplot/uPlot.min.css"),
    ),
    (
        "/ui/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/common/api.js"),
    ),
];

/// `name = "host:port"` as an address, else `default`; a bad one is a problem to report, with
/// the default to go on with.
pub fn listen_address(
    setting: &str,
    given: Option<&str>,
    default: &str,
) -> std::result::Result<SocketAddr, (String, SocketAddr)> {
    let default: SocketAddr = default.parse().expect("a valid default");
    match given {
        None => Ok(default),
        Some(text) => text.parse().map_err(|e| {
            (
                format!("{setting} = {text:?}: {e} (e.g. \"127.0.0.1:{}\")", default.port()),
                default,
            )
        }),
    }
}

/// A running server; dropping it stops the server.
pub struct Server {
    /// The address it listens on.
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// Requests answered so far (what `bench` reports a browser made).
    requests: Arc<AtomicU64>,
}

impl Server {
    /// Requests answered so far, any path, any status.
    pub fn requests_served(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves `app` (plus `assets`, behind the token check when one is set) on `listen`, or on
    /// the next free port of the next [`PORTS_TRIED`] when it is taken (port 0: any free port).
    pub async fn start(listen: SocketAddr, app: Router, assets: &[Asset]) -> Result<Self> {
        let listener = bind(listen).await?;
        let address = listener.local_addr().map_err(|e| Error::io(listen, e))?;
        let app = assets.iter().fold(app, |app, &(path, content_type, body)| {
            app.route(
                path,
                get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
            )
        });
        let token = std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty());
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        let app = app.layer(middleware::from_fn(
            move |headers: HeaderMap, request: Request, next: Next| {
                let token = token.clone();
                counted.fetch_add(1, Ordering::Relaxed);
                async move { require_token(token.as_deref(), &headers, request, next).await }
            },
        ));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the HTTP server stopped");
            }
        });
        Ok(Self {
            address,
            task,
            requests,
        })
    }
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
                    "cannot serve on {address}: {e}{}; give another address",
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

/// With a token set: a request passes with `Authorization: Bearer <token>`, the token's
/// cookie, or `?token=<token>` (which sets the cookie, for the page's own files).
async fn require_token(token: Option<&str>, headers: &HeaderMap, request: Request, next: Next) -> Response {
    let Some(token) = token else {
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
    if bearer == Some(token) || cookie.as_deref() == Some(token) {
        next.run(request).await
    } else if in_query.as_deref() == Some(token) {
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

/// A plain-text answer with `status`.
pub fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}
