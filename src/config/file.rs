//! The configuration file (`--config`, TOML): its sections as serde structs, read with
//! `${VAR}` expansion from the process environment. [`super::Settings::resolve`] puts it under
//! the flags and the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::vars::{self, Vars};
use crate::error::{ConfigProblem, Error, Result};

/// The optional configuration file (`--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    /// Lake root.
    pub(super) lake: Option<String>,
    #[serde(default)]
    pub(super) mysql: MysqlSection,
    #[serde(default)]
    pub(super) mongodb: MongodbSection,
    #[serde(default)]
    pub(super) elasticsearch: ElasticsearchSection,
    #[serde(default)]
    pub(super) kafka: KafkaSection,
    #[serde(default)]
    pub(super) s3: S3Section,
    #[serde(default)]
    pub(super) engine: EngineSection,
    #[serde(default)]
    pub(super) ui: UiSection,
    #[serde(default)]
    pub(super) metrics: MetricsSection,
    /// Variables for `${VAR}` expansion, below the environment in precedence.
    #[serde(default)]
    pub(super) vars: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MysqlSection {
    pub(super) url: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) ssl_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MongodbSection {
    pub(super) uri: Option<String>,
    pub(super) database: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ElasticsearchSection {
    pub(super) url: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) ssl_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KafkaSection {
    pub(super) bootstrap_servers: Option<String>,
    pub(super) security_protocol: Option<String>,
    pub(super) sasl_mechanism: Option<String>,
    pub(super) sasl_username: Option<String>,
    pub(super) sasl_password: Option<String>,
    pub(super) ssl_ca_location: Option<PathBuf>,
    /// librdkafka properties set on every client (`[kafka.properties]`).
    #[serde(default)]
    pub(super) properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EngineSection {
    /// `--memory-limit`, e.g. `"4GiB"`.
    pub(super) memory_limit: Option<String>,
    /// `--spill-dir`.
    pub(super) spill_dir: Option<PathBuf>,
    /// `--retry-for`, e.g. `"5m"`.
    pub(super) retry_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UiSection {
    /// `--ui`, e.g. `"0.0.0.0:4040"`.
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    /// `--metrics-push`: the Prometheus Pushgateway a batch run pushes its final metrics to.
    pub(super) push_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct S3Section {
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    pub(super) allow_http: Option<bool>,
}

pub(super) fn read_config_file(path: &Path) -> Result<ConfigFile> {
    // An unreadable configuration file is a configuration problem (exit 3), not a failed job.
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config_in(
            path.display().to_string(),
            format!("cannot read the configuration file: {e}"),
        )
    })?;
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
