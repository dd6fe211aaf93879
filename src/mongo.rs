//! MongoDB clients, shared by the MongoDB source and `generate --load-mongodb`: the connection
//! string with `MONGODB_USER` / `MONGODB_PASSWORD` added when it names no user, and errors that
//! name the server (never its password) and say what to check.

use std::time::Duration;

use mongodb::Client;
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, Credential};

use crate::config::MongoSettings;

/// How long an operation looks for a server before it fails, unless the URI says
/// (`serverSelectionTimeoutMS`): the driver's 30 s is long for a job that will be retried.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to MongoDB: a message naming the server and what to check, and
/// whether trying again later may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The message.
    pub message: String,
    /// Whether a retry may help (the server away, rather than refusing the request).
    pub retryable: bool,
}

/// A client for the server `settings` name (connecting happens at the first operation).
pub async fn client(settings: &MongoSettings) -> Result<Client, Failure> {
    let mut options = ClientOptions::parse(&settings.uri).await.map_err(|e| Failure {
        message: format!(
            "MONGODB_URI `{}` is not a MongoDB connection string: {e}",
            settings.shown()
        ),
        retryable: false,
    })?;
    if options.credential.is_none()
        && let Some(user) = &settings.user
    {
        options.credential = Some(
            Credential::builder()
                .username(user.clone())
                .password(settings.password.clone())
                .build(),
        );
    }
    options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.app_name.get_or_insert_with(|| "quickchat-etl".to_string());
    Client::with_options(options).map_err(|e| failure(settings, "connecting", &e))
}

/// `e`, met while `doing` something with the server of `settings`, as a [`Failure`].
pub fn failure(settings: &MongoSettings, doing: &str, e: &mongodb::error::Error) -> Failure {
    let server = settings.shown();
    let (check, retryable) = match e.kind.as_ref() {
        // A certificate refused shows as an I/O error inside a server-selection timeout.
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) if e.to_string().contains("certificate") => (
            "does tlsCAFile=<PEM file> in MONGODB_URI name the CA that signed the server's certificate?",
            true,
        ),
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
            ("is the server running, and MONGODB_URI right?", true)
        }
        ErrorKind::DnsResolve { .. } => ("is the host name in MONGODB_URI right?", true),
        ErrorKind::Authentication { .. } => (
            "check MONGODB_USER / MONGODB_PASSWORD or the user in MONGODB_URI, and its authSource",
            false,
        ),
        ErrorKind::InvalidTlsConfig { .. } => ("check the TLS options in MONGODB_URI", false),
        _ => ("", false),
    };
    // The driver's messages can quote the connection string; keep its password out.
    let said = redact_password(&e.to_string(), settings.password.as_deref());
    let check = if check.is_empty() {
        String::new()
    } else {
        format!(" ({check})")
    };
    Failure {
        message: format!("{doing} MongoDB at {server} failed: {said}{check}"),
        retryable,
    }
}

/// `text` with every occurrence of `password` replaced by `***`.
fn redact_password(text: &str, password: Option<&str>) -> String {
    match password.filter(|p| !p.is_empty()) {
        Some(password) => text.replace(password, "***"),
        None => text.to_string(),
    }
}

/// How a collection is named in messages and the quarantine: `mongodb:<database>.<collection>`.
pub fn collection_origin(database: &str, collection: &str) -> String {
    format!("mongodb:{database}.{collection}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(uri: &str) -> MongoSettings {
        MongoSettings {
            uri: uri.into(),
            database: "quickchat".into(),
            user: Some("etl".into()),
            password: Some("s3cret-pw".into()),
        }
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_named_without_the_password_and_may_be_retried() {
        let settings = MongoSettings {
            uri: "mongodb://etl:s3cret-pw@127.0.0.1:9/?serverSelectionTimeoutMS=200".into(),
            ..settings("")
        };
        let client = client(&settings).await.unwrap();
        let e = client
            .database("quickchat")
            .run_command(mongodb::bson::doc! {"ping": 1})
            .await
            .unwrap_err();
        let failure = failure(&settings, "reading", &e);
        assert!(failure.retryable, "{failure:?}");
        assert!(
            failure.message.contains("mongodb://etl:***@127.0.0.1:9/"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("is the server running"), "{}", failure.message);
        assert!(!failure.message.contains("s3cret-pw"), "{}", failure.message);
    }

    #[tokio::test]
    async fn a_connection_string_that_is_none_says_so() {
        let failure = client(&settings("postgres://db/x")).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("is not a MongoDB connection string"),
            "{}",
            failure.message
        );
    }
}
