//! The servers a run may talk to besides the lake — MySQL, MongoDB, Elasticsearch, how Kafka
//! clients authenticate, S3 — resolved from their flags over the configuration file, as
//! settings whose `Debug` never shows a password, and [`redact_url`], the one way a URL with
//! credentials is shown in logs and errors.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use url::Url;

use super::file::{ConfigFile, S3Section};
use super::given;
use crate::cli::ServerArgs;
use crate::error::ConfigProblem;

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
    /// `ELASTICSEARCH_SSL_CA`: the authorities an https server's certificate is checked
    /// against, beside the platform's roots.
    pub ssl_ca: Option<std::path::PathBuf>,
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

/// How every Kafka client of the process (source, sink, `produce`, admin) authenticates and
/// encrypts: librdkafka's `security.protocol`, `sasl.*` and `ssl.ca.location`, plus any
/// librdkafka property of the config file's `[kafka.properties]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `PLAINTEXT` (librdkafka's default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`PLAIN` when a SASL user is given alone).
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// PEM file of the certificate authorities the brokers' certificates are checked against
    /// (default: the system's).
    pub ssl_ca_location: Option<PathBuf>,
    /// Further librdkafka properties, as given (`ssl.endpoint.identification.algorithm`, ...).
    pub properties: BTreeMap<String, String>,
}

/// The protocols librdkafka speaks to brokers.
const KAFKA_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The SASL mechanisms this build has (GSSAPI/Kerberos needs Cyrus SASL: not built in).
const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// `value` in upper case when it is one of `names` (in any case), else what `variable` may be.
fn one_of(value: Option<String>, variable: &str, names: &[&str]) -> Result<Option<String>, String> {
    let Some(value) = value else { return Ok(None) };
    let upper = value.to_ascii_uppercase();
    if names.contains(&upper.as_str()) {
        Ok(Some(upper))
    } else {
        Err(format!("{variable} `{value}` is not one of {}", names.join(", ")))
    }
}

impl KafkaSecurity {
    /// Checks the combination and spells the names as librdkafka does; a problem names the
    /// variable to change.
    pub fn checked(mut self) -> Result<Self, String> {
        self.protocol = one_of(self.protocol.take(), "KAFKA_SECURITY_PROTOCOL", &KAFKA_PROTOCOLS)?;
        self.sasl_mechanism = one_of(self.sasl_mechanism.take(), "KAFKA_SASL_MECHANISM", &SASL_MECHANISMS)?;
        let sasl = matches!(self.protocol.as_deref(), Some("SASL_PLAINTEXT" | "SASL_SSL"));
        match (&self.sasl_username, &self.sasl_password) {
            (Some(_), None) => return Err("KAFKA_SASL_USERNAME is set without KAFKA_SASL_PASSWORD".into()),
            (None, Some(_)) => return Err("KAFKA_SASL_PASSWORD is set without KAFKA_SASL_USERNAME".into()),
            (Some(_), Some(_)) if !sasl => {
                return Err(
                    "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL is not SASL_PLAINTEXT or SASL_SSL".into(),
                );
            }
            (Some(_), Some(_)) if self.sasl_mechanism.is_none() => self.sasl_mechanism = Some("PLAIN".into()),
            _ => {}
        }
        if let Some(ca) = &self.ssl_ca_location
            && !ca.is_file()
        {
            return Err(format!("KAFKA_SSL_CA_LOCATION {} is not a file", ca.display()));
        }
        Ok(self)
    }

    /// The librdkafka properties to set on every client.
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let named = [
            ("security.protocol", self.protocol.clone()),
            ("sasl.mechanisms", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
            ("sasl.password", self.sasl_password.clone()),
            (
                "ssl.ca.location",
                self.ssl_ca_location.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        let mut properties: Vec<(String, String)> = self.properties.clone().into_iter().collect();
        properties.extend(named.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))));
        properties
    }
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, ...).
fn secret_property(key: &str) -> bool {
    key.contains("password") || key.contains("secret")
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if secret_property(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("properties", &properties)
            .finish()
    }
}

/// The servers' settings, resolved from their flags (with the environment clap read into them)
/// over the configuration file's sections.
pub(super) struct ServerSettings {
    pub mysql_url: Option<String>,
    pub mysql_ssl_ca: Option<PathBuf>,
    pub mongodb: Option<MongoSettings>,
    pub elasticsearch: Option<ElasticsearchSettings>,
    pub kafka_brokers: Option<String>,
    pub kafka_security: KafkaSecurity,
    /// The lake's object-store options (S3).
    pub storage_options: HashMap<String, String>,
}

impl ServerSettings {
    /// Resolves every server's settings; what is wrong goes to `problems`, to be reported with
    /// the rest of the configuration's problems.
    pub(super) fn resolve(args: &ServerArgs, file: &ConfigFile, problems: &mut Vec<ConfigProblem>) -> Self {
        let mysql_url = given(&args.mysql_url).or(file.mysql.url.clone()).and_then(|url| {
            let user = given(&args.mysql_user).or(file.mysql.user.clone());
            let password = given(&args.mysql_password).or(file.mysql.password.clone());
            mysql_url_with_credentials(&url, user.as_deref(), password.as_deref())
                .map_err(|message| problems.push(ConfigProblem::general(message)))
                .ok()
        });
        let mysql_ssl_ca = certificate_file(&args.mysql_ssl_ca, &file.mysql.ssl_ca, "MYSQL_SSL_CA", problems);
        let mongodb = given(&args.mongodb_uri)
            .or(file.mongodb.uri.clone())
            .map(|uri| MongoSettings {
                uri,
                database: given(&args.mongodb_database)
                    .or(file.mongodb.database.clone())
                    .unwrap_or_else(|| DEFAULT_MONGODB_DATABASE.to_string()),
                user: given(&args.mongodb_user).or(file.mongodb.user.clone()),
                password: given(&args.mongodb_password).or(file.mongodb.password.clone()),
            });
        let elasticsearch_ssl_ca = certificate_file(
            &args.elasticsearch_ssl_ca,
            &file.elasticsearch.ssl_ca,
            "ELASTICSEARCH_SSL_CA",
            problems,
        );
        let elasticsearch = given(&args.elasticsearch_url)
            .or(file.elasticsearch.url.clone())
            .map(|url| ElasticsearchSettings {
                url,
                user: given(&args.elasticsearch_user).or(file.elasticsearch.user.clone()),
                password: given(&args.elasticsearch_password).or(file.elasticsearch.password.clone()),
                ssl_ca: elasticsearch_ssl_ca,
            });
        let kafka_security = KafkaSecurity {
            protocol: given(&args.kafka_security_protocol).or(file.kafka.security_protocol.clone()),
            sasl_mechanism: given(&args.kafka_sasl_mechanism).or(file.kafka.sasl_mechanism.clone()),
            sasl_username: given(&args.kafka_sasl_username).or(file.kafka.sasl_username.clone()),
            sasl_password: given(&args.kafka_sasl_password).or(file.kafka.sasl_password.clone()),
            ssl_ca_location: args
                .kafka_ssl_ca_location
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .or(file.kafka.ssl_ca_location.clone()),
            properties: file.kafka.properties.clone(),
        }
        .checked()
        .unwrap_or_else(|message| {
            problems.push(ConfigProblem::general(message));
            KafkaSecurity::default()
        });
        Self {
            mysql_url,
            mysql_ssl_ca,
            mongodb,
            elasticsearch,
            kafka_brokers: given(&args.brokers).or(file.kafka.bootstrap_servers.clone()),
            kafka_security,
            storage_options: s3_options(args, &file.s3),
        }
    }
}

/// A certificate file from its flag (or `variable`) or the config file; one that is not a file
/// is a problem naming `variable`.
fn certificate_file(
    flag: &Option<PathBuf>,
    in_file: &Option<PathBuf>,
    variable: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<PathBuf> {
    let path = flag.clone().filter(|p| !p.as_os_str().is_empty()).or(in_file.clone());
    if let Some(path) = path.as_ref().filter(|path| !path.is_file()) {
        problems.push(ConfigProblem::general(format!(
            "{variable} {} is not a file",
            path.display()
        )));
    }
    path
}

/// Object-store options for S3: the `[s3]` section under the flags and `AWS_*` variables.
fn s3_options(args: &ServerArgs, file: &S3Section) -> HashMap<String, String> {
    let mut options = HashMap::new();
    let mut put = |key: &str, flag: &Option<String>, file_value: &Option<String>| {
        if let Some(value) = given(flag).or(file_value.clone()) {
            options.insert(key.to_string(), value);
        }
    };
    put("aws_access_key_id", &args.s3_access_key_id, &file.access_key_id);
    put(
        "aws_secret_access_key",
        &args.s3_secret_access_key,
        &file.secret_access_key,
    );
    put("aws_session_token", &args.s3_session_token, &None);
    put("aws_region", &args.s3_region, &file.region);
    put("aws_endpoint_url", &args.s3_endpoint, &file.endpoint);
    let plain_http_endpoint = options
        .get("aws_endpoint_url")
        .is_some_and(|e| e.starts_with("http://"));
    if file.allow_http.unwrap_or(plain_http_endpoint) {
        // MinIO and local S3 servers usually listen on plain HTTP.
        options.insert("aws_allow_http".to_string(), "true".to_string());
    }
    options
}

/// Builds a `mysql://` URL from `MYSQL_URL` (plain or `jdbc:mysql://`), adding `MYSQL_USER` and
/// `MYSQL_PASSWORD` when the URL carries no user.
pub fn mysql_url_with_credentials(
    url: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> std::result::Result<String, String> {
    let plain = url.strip_prefix("jdbc:").unwrap_or(url);
    let mut parsed = Url::parse(plain).map_err(|e| format!("MYSQL_URL `{url}` is not a URL: {e}"))?;
    if parsed.scheme() != "mysql" {
        return Err(format!("MYSQL_URL `{url}` must start with mysql:// or jdbc:mysql://"));
    }
    if parsed.username().is_empty() {
        if let Some(user) = user {
            parsed
                .set_username(user)
                .map_err(|()| format!("MYSQL_USER `{user}` cannot be used in a URL"))?;
        }
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            parsed
                .set_password(Some(password))
                .map_err(|()| "MYSQL_PASSWORD cannot be used in a URL".to_string())?;
        }
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_urls_and_separate_credentials_become_one_mysql_url() {
        let url = mysql_url_with_credentials("jdbc:mysql://db:3306/users", Some("etl"), Some("p@ss")).unwrap();
        assert_eq!(url, "mysql://etl:p%40ss@db:3306/users");
        let kept = mysql_url_with_credentials("mysql://me@db/x", Some("etl"), Some("pw")).unwrap();
        assert_eq!(kept, "mysql://me@db/x");
        assert!(mysql_url_with_credentials("postgres://db/x", None, None).is_err());
        assert_eq!(redact_url("mysql://etl:secret@db/x"), "mysql://etl:***@db/x");
        assert_eq!(
            redact_url("mongodb://etl:p@ss:w@a:27017,b:27017/?authSource=admin"),
            "mongodb://etl:***@a:27017,b:27017/?authSource=admin"
        );
        assert_eq!(redact_url("mongodb://a:27017/x?u=1@2"), "mongodb://a:27017/x?u=1@2");
        assert_eq!(
            redact_url("mongodb+srv://etl@cluster0.example.net/"),
            "mongodb+srv://etl@cluster0.example.net/"
        );
    }

    #[test]
    fn server_settings_never_show_a_password() {
        let search = ElasticsearchSettings {
            url: "http://admin:s3cret@127.0.0.1:9200".into(),
            user: None,
            password: Some("other-secret".into()),
            ssl_ca: None,
        };
        let shown = format!("{search:?} {}", search.shown());
        assert!(!shown.contains("s3cret") && !shown.contains("other-secret"), "{shown}");
        assert!(shown.contains("http://admin:***@127.0.0.1:9200"), "{shown}");
    }

    #[test]
    fn kafka_security_is_checked_and_never_shows_a_password() {
        let given = KafkaSecurity {
            protocol: Some("sasl_ssl".into()),
            sasl_username: Some("quickchat".into()),
            sasl_password: Some("kafka-s3cret".into()),
            properties: BTreeMap::from([("ssl.key.password".to_string(), "key-s3cret".to_string())]),
            ..Default::default()
        };
        let checked = given.clone().checked().unwrap();
        assert_eq!(checked.protocol.as_deref(), Some("SASL_SSL"));
        assert_eq!(checked.sasl_mechanism.as_deref(), Some("PLAIN"));
        let shown = format!("{checked:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            checked
                .client_properties()
                .contains(&("sasl.password".into(), "kafka-s3cret".into()))
        );
        let plaintext = KafkaSecurity {
            protocol: None,
            ..given.clone()
        };
        assert!(plaintext.checked().unwrap_err().contains("KAFKA_SECURITY_PROTOCOL"));
        let alone = KafkaSecurity {
            sasl_password: None,
            ..given.clone()
        };
        assert!(alone.checked().unwrap_err().contains("without KAFKA_SASL_PASSWORD"));
        let kerberos = KafkaSecurity {
            sasl_mechanism: Some("GSSAPI".into()),
            ..given
        };
        assert!(kerberos.checked().unwrap_err().contains("SCRAM-SHA-256"));
    }
}
