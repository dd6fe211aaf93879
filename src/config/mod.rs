//! Resolved configuration: flags, environment and the configuration file turned into the typed
//! [`Settings`] the rest of the code uses, and the pipeline files turned into [`job::Job`]s and
//! [`stream_pipeline::StreamPipeline`]s. Precedence: flags > environment > file > defaults;
//! clap reads each flag's environment variable (`--help` names them), so [`Settings::resolve`]
//! only puts the configuration file and the defaults under what clap found.
//!
//! Environment variables are those of the Spark project being replaced: `DATA_LAKE_PATH`,
//! `MYSQL_URL` (a `jdbc:mysql://` URL is accepted), `MYSQL_USER`, `MYSQL_PASSWORD`,
//! `KAFKA_BOOTSTRAP_SERVERS`, and the usual `AWS_*` variables for S3 or MinIO.

pub mod columns;
mod file;
pub mod job;
pub mod pipeline;
mod servers;
mod sinks;
pub mod stream;
pub mod stream_pipeline;
pub mod vars;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::cli::GlobalArgs;
use crate::error::{ConfigProblem, Error, Result};
use crate::observe::server::listen_address;
use crate::project::ProjectLocation;
use crate::query::memory::MemorySettings;
use file::{ConfigFile, read_config_file};
use servers::ServerSettings;
pub use servers::{
    DEFAULT_MONGODB_DATABASE, ElasticsearchSettings, KafkaSecurity, MongoSettings, mysql_url_with_credentials,
    redact_url,
};
use stream_pipeline::StreamPipeline;
pub use vars::Vars;

/// The lake root used when neither `--lake`, `DATA_LAKE_PATH` nor the config file names one.
pub const DEFAULT_LAKE: &str = "./lake";

/// Everything a command needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the lake lives and how to reach it.
    pub lake: LakeLocation,
    /// Where pipeline and SQL files come from.
    pub project: ProjectLocation,
    /// The MySQL connection URL with credentials, when configured.
    pub mysql_url: Option<String>,
    /// The authorities MySQL servers' certificates are checked against (`MYSQL_SSL_CA`); TLS
    /// is on when set.
    pub mysql_ssl_ca: Option<PathBuf>,
    /// The MongoDB server, when configured.
    pub mongodb: Option<MongoSettings>,
    /// The Elasticsearch server, when configured.
    pub elasticsearch: Option<ElasticsearchSettings>,
    /// Kafka bootstrap servers (`--brokers`, `KAFKA_BOOTSTRAP_SERVERS`, the config file), when
    /// configured; a pipeline file's own `[kafka] brokers` comes after them
    /// ([`Settings::brokers_for`]).
    pub kafka_brokers: Option<String>,
    /// How Kafka clients authenticate and encrypt (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`,
    /// `KAFKA_SSL_CA_LOCATION`, `[kafka]` of the config file).
    pub kafka_security: KafkaSecurity,
    /// Variables for `${VAR}` expansion in pipeline files.
    pub vars: Vars,
    /// The queries' memory pool and spill folder.
    pub memory: MemorySettings,
    /// How long servers away are retried (`--retry-for`).
    pub retry_for: Duration,
    /// Where `run` serves the live UI unless `--ui`/`--no-ui` say otherwise (`[ui] listen`).
    pub ui_listen: SocketAddr,
    /// The Pushgateway a batch run pushes its final metrics to unless `--metrics-push` names
    /// another (`[metrics] push_url`).
    pub metrics_push_url: Option<Url>,
}

/// A lake root URL with the object-store options needed to reach it.
#[derive(Debug, Clone)]
pub struct LakeLocation {
    /// `file:///abs/path/` or `s3://bucket/prefix/` (always ends with `/`).
    pub root: Url,
    /// Options for object_store and deltalake (`aws_endpoint_url`, `aws_region`, ...).
    pub storage_options: HashMap<String, String>,
}

impl LakeLocation {
    /// Parses a lake root given as a local path or a URL, with storage options.
    pub fn parse(text: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        let root = location_url(text)?;
        let root = if root.path().ends_with('/') {
            root
        } else {
            Url::parse(&format!("{root}/")).map_err(|e| Error::config(format!("lake `{text}`: {e}")))?
        };
        Ok(Self { root, storage_options })
    }

    /// Resolves a path from a pipeline file: relative paths are under the lake root, absolute
    /// paths and URLs stand as they are.
    pub fn resolve(&self, path: &str) -> Result<Url> {
        let mut url = if path.contains("://") || Path::new(path).is_absolute() {
            location_url(path)?
        } else {
            self.root
                .join(path.trim_start_matches("./"))
                .map_err(|e| Error::config(format!("path `{path}` under lake {}: {e}", self.root)))?
        };
        // `${LANDING_PATH}/mongo` with LANDING_PATH ending in `/` names the same folder (object
        // stores refuse empty path segments).
        if url.path().contains("//") {
            let mut collapsed = String::with_capacity(url.path().len());
            for c in url.path().chars() {
                if !(c == '/' && collapsed.ends_with('/')) {
                    collapsed.push(c);
                }
            }
            url.set_path(&collapsed);
        }
        Ok(url)
    }

    /// Like [`LakeLocation::resolve`], for a folder: the URL ends with `/` so that joining a
    /// relative file name stays inside it.
    pub fn resolve_folder(&self, path: &str) -> Result<Url> {
        let mut url = self.resolve(path)?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Ok(url)
    }

    /// Whether the lake is on the local file system.
    pub fn is_local(&self) -> bool {
        self.root.scheme() == "file"
    }
}

/// Turns a local path (relative to the working directory) or URL into a URL.
pub fn location_url(text: &str) -> Result<Url> {
    if text.contains("://") {
        return Url::parse(text).map_err(|e| Error::config(format!("`{text}` is not a valid URL: {e}")));
    }
    let path = Path::new(text);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io(".", e))?.join(path)
    };
    Url::from_file_path(normalize_dots(&absolute))
        .map_err(|()| Error::config(format!("`{text}` is not a usable local path")))
}

/// Removes `.` and `..` components without touching the file system (the folder may not exist).
fn normalize_dots(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A flag's (or its environment variable's) value, unless empty: `MYSQL_URL=` unsets it.
fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves settings from the global flags (with the environment clap read into them), the
    /// configuration file they name, and `env` for `${VAR}` expansion (normally the process
    /// environment; tests pass their own).
    pub fn resolve(args: &GlobalArgs, env: &HashMap<String, String>) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_config_file(path)?,
            None => ConfigFile::default(),
        };
        let mut problems = Vec::new();

        let mut vars = Vars::layered(file.vars.clone(), env.clone());
        let lake_text = given(&args.lake)
            .or(file.lake.clone())
            .unwrap_or_else(|| DEFAULT_LAKE.into());
        vars.set("DATA_LAKE_PATH", lake_text.clone());

        let ServerSettings {
            mysql_url,
            mysql_ssl_ca,
            mongodb,
            elasticsearch,
            kafka_brokers,
            kafka_security,
            storage_options,
        } = ServerSettings::resolve(&args.servers, &file, &mut problems);
        let lake = match LakeLocation::parse(&lake_text, storage_options) {
            Ok(lake) => Some(lake),
            Err(Error::Config(mut p)) => {
                problems.append(&mut p);
                None
            }
            Err(other) => return Err(other),
        };

        let limit = match (args.memory_limit, &file.engine.memory_limit) {
            (Some(limit), _) => limit,
            (None, Some(text)) => parse_bytes(text).unwrap_or_else(|message| {
                problems.push(ConfigProblem::general(format!("[engine] memory_limit: {message}")));
                0
            }),
            (None, None) => MemorySettings::default_limit(),
        };
        let memory = MemorySettings {
            limit,
            spill_dir: args.spill_dir.clone().or(file.engine.spill_dir.clone()),
        };

        let retry_for = match (args.retry_for, &file.engine.retry_for) {
            (Some(bound), _) => bound,
            (None, Some(text)) => stream::parse_duration(text).unwrap_or_else(|message| {
                problems.push(ConfigProblem::general(format!("[engine] retry_for: {message}")));
                crate::retry::DEFAULT_RETRY_FOR
            }),
            (None, None) => crate::retry::DEFAULT_RETRY_FOR,
        };

        let ui_listen = listen_address(file.ui.listen.as_deref()).unwrap_or_else(|(problem, default)| {
            problems.push(ConfigProblem::general(problem));
            default
        });

        let metrics_push_url = file.metrics.push_url.as_deref().and_then(|text| {
            Url::parse(text)
                .map_err(|e| problems.push(ConfigProblem::general(format!("[metrics] push_url `{text}`: {e}"))))
                .ok()
        });

        let project = match &args.project {
            Some(dir) if dir.join("pipelines").is_dir() => ProjectLocation::Folder(dir.clone()),
            Some(dir) => {
                problems.push(ConfigProblem::general(format!(
                    "project folder {} has no pipelines/ folder",
                    dir.display()
                )));
                ProjectLocation::BuiltIn
            }
            None if Path::new("pipelines").is_dir() && Path::new("sql").is_dir() => {
                ProjectLocation::Folder(PathBuf::from("."))
            }
            None => ProjectLocation::BuiltIn,
        };

        match (problems.is_empty(), lake) {
            (true, Some(lake)) => Ok(Settings {
                lake,
                project,
                mysql_url,
                mysql_ssl_ca,
                mongodb,
                elasticsearch,
                kafka_brokers,
                kafka_security,
                vars,
                memory,
                retry_for,
                ui_listen,
                metrics_push_url,
            }),
            _ => Err(Error::Config(problems)),
        }
    }

    /// The brokers a streaming pipeline uses: the settings' (flag, environment, config file),
    /// else the pipeline file's `[kafka] brokers`.
    pub fn brokers_for(&self, pipeline: &StreamPipeline) -> Option<String> {
        self.kafka_brokers.clone().or(pipeline.kafka.brokers.clone())
    }
}

/// A size in binary units, as [`parse_bytes`] takes it back (`64.0 KiB`, `3.5 GiB`).
pub fn describe_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

/// A size such as `512MB`, `4GiB`, `2G` or `1000000` (bytes): decimal units (kB, MB, GB, TB)
/// are powers of 1000, binary ones (KiB, MiB, GiB, TiB, and K, M, G, T) of 1024.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 512MB, 4GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = (number * scale as f64) as u64;
    if bytes == 0 {
        return Err(format!("`{text}`: a size must be more than 0 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(lake: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            lake: lake.map(String::from),
            config: None,
            project: None,
            log_format: crate::cli::LogFormat::Text,
            log_level: "info".into(),
            memory_limit: None,
            spill_dir: None,
            retry_for: None,
            servers: crate::cli::ServerArgs::default(),
        }
    }

    #[test]
    fn s3_settings_allow_plain_http_endpoints_and_relative_paths_resolve_under_the_lake() {
        let mut global = args(Some("s3://bucket/lake"));
        global.servers.s3_endpoint = Some("http://127.0.0.1:9000".to_string());
        global.servers.s3_region = Some("us-east-1".to_string());
        let settings = Settings::resolve(&global, &HashMap::new()).unwrap();
        assert_eq!(settings.lake.root.as_str(), "s3://bucket/lake/");
        assert_eq!(settings.lake.storage_options["aws_allow_http"], "true");
        assert_eq!(
            settings.lake.resolve("landing/x.json").unwrap().as_str(),
            "s3://bucket/lake/landing/x.json"
        );
        assert_eq!(
            settings.lake.resolve("/data/x.json").unwrap().as_str(),
            "file:///data/x.json"
        );
        assert_eq!(
            settings.lake.resolve_folder("landing").unwrap().as_str(),
            "s3://bucket/lake/landing/"
        );
        // A variable ending in `/` before `/mongo/...` names the same file.
        for doubled in ["s3://bucket/lake/landing//mongo/x.json", "landing//mongo/x.json"] {
            assert_eq!(
                settings.lake.resolve(doubled).unwrap().as_str(),
                "s3://bucket/lake/landing/mongo/x.json"
            );
        }
        assert_eq!(
            settings.lake.resolve("/data//landing/x.json").unwrap().as_str(),
            "file:///data/landing/x.json"
        );
        assert_eq!(settings.vars.get("DATA_LAKE_PATH"), Some("s3://bucket/lake"));
    }

    #[test]
    fn flags_override_environment_which_overrides_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("quickchat.toml");
        let ca = dir.path().join("search-ca.pem");
        std::fs::write(&ca, "a certificate").unwrap();
        std::fs::write(
            &file,
            "lake = \"s3://from-file/lake\"\n[mysql]\nurl = \"mysql://file-host/db\"\nuser = \"file_user\"\n\
             [kafka]\nbootstrap_servers = \"file:9092\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"file-user\"\n\
             sasl_password = \"file-secret\"\n[kafka.properties]\n\"ssl.endpoint.identification.algorithm\" = \"none\"\n[vars]\nLANDING_PATH = \"file-landing\"\nONLY_IN_FILE = \"x\"\n\
             [elasticsearch]\nurl = \"https://file-search:9200\"\n"
                .to_string()
                + &format!("ssl_ca = {:?}\n", ca.display().to_string()),
        )
        .unwrap();
        let mut global = args(None);
        global.config = Some(file);
        // What clap read from a flag or the environment.
        global.servers.mysql_url = Some("jdbc:mysql://env-host:3306/db".to_string());
        let env = HashMap::from([("LANDING_PATH".to_string(), "env-landing".to_string())]);
        let settings = Settings::resolve(&global, &env).unwrap();
        assert_eq!(settings.lake.root.as_str(), "s3://from-file/lake/");
        assert_eq!(
            settings.mysql_url.as_deref(),
            Some("mysql://file_user@env-host:3306/db")
        );
        assert_eq!(settings.kafka_brokers.as_deref(), Some("file:9092"));
        let search = settings.elasticsearch.as_ref().expect("the file's server");
        assert_eq!(search.ssl_ca.as_deref(), Some(ca.as_path()));
        let kafka = settings.kafka_security.client_properties();
        for expected in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "file-user"),
            ("sasl.password", "file-secret"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ] {
            assert!(
                kafka.contains(&(expected.0.into(), expected.1.into())),
                "{expected:?} in {kafka:?}"
            );
        }
        assert_eq!(settings.vars.get("LANDING_PATH"), Some("env-landing"));
        assert_eq!(settings.vars.get("ONLY_IN_FILE"), Some("x"));

        global.lake = Some("/flag/lake".to_string());
        global.servers.brokers = Some("flag:9092".to_string());
        let settings = Settings::resolve(&global, &env).unwrap();
        assert_eq!(settings.lake.root.as_str(), "file:///flag/lake/");
        assert_eq!(settings.kafka_brokers.as_deref(), Some("flag:9092"));
    }

    #[test]
    fn an_unreadable_config_file_is_a_configuration_error() {
        let mut global = args(None);
        global.config = Some(PathBuf::from("/nonexistent/quickchat.toml"));
        let err = Settings::resolve(&global, &HashMap::new()).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::Config, "{err}");
        assert!(err.to_string().contains("/nonexistent/quickchat.toml"), "{err}");
    }

    #[test]
    fn a_config_file_with_an_unknown_key_is_a_config_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lakes = \"x\"\n").unwrap();
        let mut global = args(None);
        global.config = Some(file);
        let err = Settings::resolve(&global, &HashMap::new()).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("lakes"), "{err}");
    }

    #[test]
    fn local_lake_defaults_to_an_absolute_folder() {
        let settings = Settings::resolve(&args(None), &HashMap::new()).unwrap();
        assert!(settings.lake.is_local());
        assert!(settings.lake.root.path().ends_with("/lake/"), "{}", settings.lake.root);
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units_and_bad_ones_say_why() {
        assert_eq!(parse_bytes("512MB"), Ok(512_000_000));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5 KiB"), Ok(1536));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("4 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("GB").unwrap_err().contains("not a size"));
        assert!(parse_bytes("0MB").unwrap_err().contains("more than 0"));
    }
}
