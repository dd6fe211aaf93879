//! MySQL connections, shared by the `mysql` source, the MySQL sink and `generate --mysql-url`:
//! the connection options of a URL with the process's TLS setting.
//!
//! TLS: `?require_ssl=true` in the URL checks the server's certificate against the public
//! roots built into the binary; `MYSQL_SSL_CA` (a PEM file) adds the authorities of a private
//! CA and turns TLS on by itself. `verify_identity=false` in the URL skips the host-name check
//! (a server reached by an address its certificate does not name).

use std::path::PathBuf;
use std::sync::{Once, OnceLock};

use mysql_async::{Opts, OptsBuilder, SslOpts};

static SSL_CA: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Sets the certificate authorities MySQL servers are checked against; the first call wins
/// (commands call it at start, before any connection).
pub fn configure(ssl_ca: Option<PathBuf>) {
    let _ = SSL_CA.set(ssl_ca);
}

/// The options to connect to `url` with, or what is wrong with the URL.
pub fn options(url: &str) -> Result<Opts, String> {
    let opts = Opts::from_url(url).map_err(|e| format!("bad MySQL URL: {e}"))?;
    let ssl_ca = SSL_CA.get().cloned().flatten();
    if opts.ssl_opts().is_none() && ssl_ca.is_none() {
        return Ok(opts);
    }
    install_crypto_provider();
    let mut ssl = opts.ssl_opts().cloned().unwrap_or_else(SslOpts::default);
    if let Some(ca) = ssl_ca {
        ssl = ssl.with_root_certs(vec![ca.into()]);
    }
    // Over a unix socket the TLS handshake would not happen: stay on TCP.
    Ok(OptsBuilder::from_opts(opts).ssl_opts(ssl).prefer_socket(false).into())
}

/// mysql_async's rustls asks for the process's crypto provider; the build has two (aws-lc-rs
/// and ring, through other crates), so one is named.
fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The message of a connection that failed, with what to check for its cause.
pub fn cannot_connect(error: &mysql_async::Error) -> String {
    let text = error.to_string();
    let check = if text.contains("certificate") {
        "does MYSQL_SSL_CA name the CA file that signed the server's certificate?"
    } else if text.contains("Access denied") {
        "are the user and password in MYSQL_URL right, and does the user need TLS \
         (MYSQL_SSL_CA or ?require_ssl=true)?"
    } else {
        "is MySQL running and MYSQL_URL right? `docker compose -f docker/compose.yml up -d mysql` starts one"
    };
    format!("cannot connect: {text} ({check})")
}
