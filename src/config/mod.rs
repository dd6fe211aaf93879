//! Resolved configuration: flags, environment and the configuration file turned into the typed
//! [`Settings`] the rest of the code uses. Precedence: flags > environment > file > defaults.
//!
//! Environment variables are those of the Spark project being replaced: `DATA_LAKE_PATH`,
//! `MYSQL_URL` (a `jdbc:mysql://` URL is accepted), `MYSQL_USER`, `MYSQL_PASSWORD`,
//! `KAFKA_BOOTSTRAP_SERVERS`, and the usual `AWS_*` variables for S3 or MinIO.

pub mod columns;
pub mod pipeline;
pub mod stream;
pub mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::cli::GlobalArgs;
use crate::error::{ConfigProblem, Error, Result};
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
    /// Kafka bootstrap servers, when configured.
    pub kafka_bootstrap_servers: Option<String>,
    /// Variables for `${VAR}` expansion in pipeline files.
    pub vars: Vars,
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
        if path.contains("://") || Path::new(path).is_absolute() {
            location_url(path)
        } else {
            self.root
                .join(path.trim_start_matches("./"))
                .map_err(|e| Error::config(format!("path `{path}` under lake {}: {e}", self.root)))
        }
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

/// Where pipeline files and SQL files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectLocation {
    /// A folder with `pipelines/` and `sql/`.
    Folder(PathBuf),
    /// The copy built into the binary (used by an installed binary run anywhere).
    BuiltIn,
}

/// The optional configuration file (`--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Lake root.
    lake: Option<String>,
    #[serde(default)]
    mysql: MysqlSection,
    #[serde(default)]
    kafka: KafkaSection,
    #[serde(default)]
    s3: S3Section,
    /// Variables for `${VAR}` expansion, below the environment in precedence.
    #[serde(default)]
    vars: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MysqlSection {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    bootstrap_servers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Section {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
}

impl Settings {
    /// Resolves settings from the global flags and an environment (normally the process
    /// environment; tests pass their own).
    pub fn resolve(args: &GlobalArgs, env: &HashMap<String, String>) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_config_file(path)?,
            None => ConfigFile::default(),
        };
        let from_env = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        let mut problems = Vec::new();

        let mut vars = Vars::layered(file.vars.clone(), env.clone());
        let lake_text = args
            .lake
            .clone()
            .or(file.lake.clone())
            .unwrap_or_else(|| DEFAULT_LAKE.into());
        vars.set("DATA_LAKE_PATH", lake_text.clone());

        let storage_options = s3_options(&file.s3, &from_env);
        let lake = match LakeLocation::parse(&lake_text, storage_options) {
            Ok(lake) => Some(lake),
            Err(Error::Config(mut p)) => {
                problems.append(&mut p);
                None
            }
            Err(other) => return Err(other),
        };

        let mysql_url = match from_env("MYSQL_URL").or(file.mysql.url.clone()) {
            Some(url) => {
                let user = from_env("MYSQL_USER").or(file.mysql.user.clone());
                let password = from_env("MYSQL_PASSWORD").or(file.mysql.password.clone());
                match mysql_url_with_credentials(&url, user.as_deref(), password.as_deref()) {
                    Ok(url) => Some(url),
                    Err(message) => {
                        problems.push(ConfigProblem::general(message));
                        None
                    }
                }
            }
            None => None,
        };
        let kafka_bootstrap_servers = from_env("KAFKA_BOOTSTRAP_SERVERS").or(file.kafka.bootstrap_servers.clone());

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
                kafka_bootstrap_servers,
                vars,
            }),
            _ => Err(Error::Config(problems)),
        }
    }
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let mut value: toml::Value =
        toml::from_str(&text).map_err(|e| Error::config_in(path.display().to_string(), e.to_string()))?;
    // The config file's own strings may use ${VAR} with the process environment.
    let env_vars = Vars::layered([], std::env::vars());
    let mut problems = Vec::new();
    vars::expand_toml(&mut value, &env_vars, "", &mut problems);
    if !problems.is_empty() {
        let file = path.display().to_string();
        return Err(Error::Config(
            problems
                .into_iter()
                .map(|p| ConfigProblem::in_file(file.clone(), p))
                .collect(),
        ));
    }
    value
        .try_into()
        .map_err(|e: toml::de::Error| Error::config_in(path.display().to_string(), e.to_string()))
}

/// Object-store options for S3 from the `[s3]` section, overridden by `AWS_*` variables.
fn s3_options(file: &S3Section, from_env: &dyn Fn(&str) -> Option<String>) -> HashMap<String, String> {
    let mut options = HashMap::new();
    let mut put = |key: &str, env_names: &[&str], file_value: &Option<String>| {
        let value = env_names.iter().find_map(|name| from_env(name)).or(file_value.clone());
        if let Some(value) = value {
            options.insert(key.to_string(), value);
        }
    };
    put("aws_access_key_id", &["AWS_ACCESS_KEY_ID"], &file.access_key_id);
    put(
        "aws_secret_access_key",
        &["AWS_SECRET_ACCESS_KEY"],
        &file.secret_access_key,
    );
    put("aws_session_token", &["AWS_SESSION_TOKEN"], &None);
    put("aws_region", &["AWS_REGION", "AWS_DEFAULT_REGION"], &file.region);
    put(
        "aws_endpoint_url",
        &["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"],
        &file.endpoint,
    );
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

/// A URL with its password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
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
        }
    }

    #[test]
    fn jdbc_urls_and_separate_credentials_become_one_mysql_url() {
        let url = mysql_url_with_credentials("jdbc:mysql://db:3306/users", Some("etl"), Some("p@ss")).unwrap();
        assert_eq!(url, "mysql://etl:p%40ss@db:3306/users");
        let kept = mysql_url_with_credentials("mysql://me@db/x", Some("etl"), Some("pw")).unwrap();
        assert_eq!(kept, "mysql://me@db/x");
        assert!(mysql_url_with_credentials("postgres://db/x", None, None).is_err());
        assert_eq!(redact_url("mysql://etl:secret@db/x"), "mysql://etl:***@db/x");
    }

    #[test]
    fn flag_overrides_environment_and_relative_paths_resolve_under_the_lake() {
        let env = HashMap::from([
            ("AWS_ENDPOINT_URL".to_string(), "http://127.0.0.1:9000".to_string()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
        ]);
        let settings = Settings::resolve(&args(Some("s3://bucket/lake")), &env).unwrap();
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
        assert_eq!(settings.vars.get("DATA_LAKE_PATH"), Some("s3://bucket/lake"));
    }

    #[test]
    fn flags_override_environment_which_overrides_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("quickchat.toml");
        std::fs::write(
            &file,
            "lake = \"s3://from-file/lake\"\n[mysql]\nurl = \"mysql://file-host/db\"\nuser = \"file_user\"\n\
             [kafka]\nbootstrap_servers = \"file:9092\"\n[vars]\nLANDING_PATH = \"file-landing\"\nONLY_IN_FILE = \"x\"\n",
        )
        .unwrap();
        let mut global = args(None);
        global.config = Some(file);
        let env = HashMap::from([
            ("MYSQL_URL".to_string(), "jdbc:mysql://env-host:3306/db".to_string()),
            ("LANDING_PATH".to_string(), "env-landing".to_string()),
        ]);
        let settings = Settings::resolve(&global, &env).unwrap();
        assert_eq!(settings.lake.root.as_str(), "s3://from-file/lake/");
        assert_eq!(
            settings.mysql_url.as_deref(),
            Some("mysql://file_user@env-host:3306/db")
        );
        assert_eq!(settings.kafka_bootstrap_servers.as_deref(), Some("file:9092"));
        assert_eq!(settings.vars.get("LANDING_PATH"), Some("env-landing"));
        assert_eq!(settings.vars.get("ONLY_IN_FILE"), Some("x"));

        global.lake = Some("/flag/lake".to_string());
        let settings = Settings::resolve(&global, &env).unwrap();
        assert_eq!(settings.lake.root.as_str(), "file:///flag/lake/");
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
}
