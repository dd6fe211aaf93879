//! The servers a run may talk to besides the lake — MongoDB, Elasticsearch — as resolved
//! settings whose `Debug` never shows a password, and [`redact_url`], the one way a URL with
//! credentials is shown in logs and errors.

/// A URL with its password replaced by `***`, for logs and error messages. Read by hand, not
/// parsed: a MongoDB URI naming several hosts (`mongodb://u:p@a:27017,b:27017/`) is no URL to
/// the `url` crate, and its password must not show either.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) else {
        return url.to_string();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
        None => url.to_string(),
    }
}

/// The MongoDB server and database the `mongodb` sources read.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoSettings {
    /// The connection string as given (`mongodb://` or `mongodb+srv://`).
    pub uri: String,
    /// The database (`MONGODB_DATABASE`, default [`DEFAULT_MONGODB_DATABASE`]).
    pub database: String,
    /// `MONGODB_USER`, used when the URI names no user.
    pub user: Option<String>,
    /// `MONGODB_PASSWORD`, with [`user`](Self::user).
    pub password: Option<String>,
}

/// The database of the replaced jobs' `MONGODB_DATABASE` default.
pub const DEFAULT_MONGODB_DATABASE: &str = "quickchat";

impl std::fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSettings")
            .field("uri", &self.shown())
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl MongoSettings {
    /// The server, for messages: the URI without its password.
    pub fn shown(&self) -> String {
        redact_url(&self.uri)
    }
}
/// The Elasticsearch (or OpenSearch) server the `elasticsearch` sinks index into.
#[derive(Clone, PartialEq, Eq)]
pub struct ElasticsearchSettings {
    /// The server's URL (`http://host:9200`), with credentials in it or not.
    pub url: String,
    /// `ELASTICSEARCH_USER` (HTTP basic authentication), used when the URL names no user.
    pub user: Option<String>,
    /// `ELASTICSEARCH_PASSWORD`, with [`user`](Self::user).
    pub password: Option<String>,
}

impl std::fmt::Debug for ElasticsearchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSettings")
            .field("url", &self.shown())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ElasticsearchSettings {
    /// The server, for messages: the URL without its password.
    pub fn shown(&self) -> String {
        redact_url(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_never_show_a_password() {
        let search = ElasticsearchSettings {
            url: "http://admin:s3cret@127.0.0.1:9200".into(),
            user: None,
            password: Some("other-secret".into()),
        };
        let shown = format!("{search:?} {}", search.shown());
        assert!(!shown.contains("s3cret") && !shown.contains("other-secret"), "{shown}");
        assert!(shown.contains("http://admin:***@127.0.0.1:9200"), "{shown}");
    }
}
