//! The flags naming the servers a run talks to besides the lake (MySQL, MongoDB,
//! Elasticsearch, Kafka, S3), each with the environment variable the replaced Spark jobs read.
//! They are global flags, shown under "Servers" in `--help`; passwords come from the
//! environment by preference and clap never prints their values.

use std::path::PathBuf;

use clap::Args;

/// Where the servers are and how to authenticate to them.
#[derive(Debug, Default, Args)]
pub struct ServerArgs {
    /// MySQL/MariaDB server: mysql://host:port/db or jdbc:mysql://host:port/db. `bronze-users`
    /// reads its `users` table there, streaming MySQL sinks write there, `generate --load-mysql`
    /// loads it [default: the config file's [mysql] url; without one the users CSV export is read]
    #[arg(long, global = true, env = "MYSQL_URL", value_name = "URL", help_heading = "Servers")]
    pub mysql_url: Option<String>,

    /// MySQL user, when the URL names none.
    #[arg(
        long,
        global = true,
        env = "MYSQL_USER",
        value_name = "USER",
        help_heading = "Servers"
    )]
    pub mysql_user: Option<String>,

    /// MySQL password, when the URL names no user (prefer the environment variable: a flag is
    /// visible to other users of the machine).
    #[arg(
        long,
        global = true,
        env = "MYSQL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        help_heading = "Servers"
    )]
    pub mysql_password: Option<String>,

    /// PEM file of the certificate authorities that signed the MySQL server's TLS certificate;
    /// setting it turns TLS on (`?require_ssl=true` in the URL does with the public roots).
    #[arg(
        long,
        global = true,
        env = "MYSQL_SSL_CA",
        value_name = "FILE",
        help_heading = "Servers"
    )]
    pub mysql_ssl_ca: Option<PathBuf>,

    /// MongoDB server: mongodb://host:port/ or mongodb+srv://... `bronze-messages`,
    /// `bronze-conversations` and `bronze-calls` read its collections, `generate --load-mongodb`
    /// loads them [default: the config file's [mongodb] uri; without one the mongoexport files
    /// are read]
    #[arg(
        long,
        global = true,
        env = "MONGODB_URI",
        value_name = "URI",
        help_heading = "Servers"
    )]
    pub mongodb_uri: Option<String>,

    /// MongoDB database the collections are in [default: the config file's [mongodb] database,
    /// else quickchat].
    #[arg(
        long,
        global = true,
        env = "MONGODB_DATABASE",
        value_name = "NAME",
        help_heading = "Servers"
    )]
    pub mongodb_database: Option<String>,

    /// MongoDB user, when the URI names none.
    #[arg(
        long,
        global = true,
        env = "MONGODB_USER",
        value_name = "USER",
        help_heading = "Servers"
    )]
    pub mongodb_user: Option<String>,

    /// MongoDB password, when the URI names no user (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "MONGODB_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        help_heading = "Servers"
    )]
    pub mongodb_password: Option<String>,

    /// Elasticsearch or OpenSearch server: http://host:9200 (credentials in the URL or below).
    /// The `elasticsearch` sinks index into it [default: the config file's [elasticsearch] url;
    /// without one, optional sinks are skipped].
    #[arg(
        long,
        global = true,
        env = "ELASTICSEARCH_URL",
        value_name = "URL",
        help_heading = "Servers"
    )]
    pub elasticsearch_url: Option<String>,

    /// Elasticsearch user (HTTP basic authentication), when the URL names none.
    #[arg(
        long,
        global = true,
        env = "ELASTICSEARCH_USER",
        value_name = "USER",
        help_heading = "Servers"
    )]
    pub elasticsearch_user: Option<String>,

    /// Elasticsearch password, with --elasticsearch-user (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "ELASTICSEARCH_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        help_heading = "Servers"
    )]
    pub elasticsearch_password: Option<String>,

    /// PEM file of the certificate authorities that signed an https server's certificate
    /// [default: the platform's roots].
    #[arg(
        long,
        global = true,
        env = "ELASTICSEARCH_SSL_CA",
        value_name = "FILE",
        help_heading = "Servers"
    )]
    pub elasticsearch_ssl_ca: Option<PathBuf>,

    /// Kafka bootstrap servers [default: the config file's [kafka] bootstrap_servers, then a
    /// pipeline file's [kafka] brokers].
    #[arg(
        long,
        global = true,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        value_name = "HOST:PORT,...",
        help_heading = "Servers"
    )]
    pub brokers: Option<String>,

    /// Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [default: the config
    /// file's [kafka] security_protocol, else PLAINTEXT].
    #[arg(
        long,
        global = true,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_name = "PROTOCOL",
        help_heading = "Servers"
    )]
    pub kafka_security_protocol: Option<String>,

    /// Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [default: PLAIN with a user].
    #[arg(
        long,
        global = true,
        env = "KAFKA_SASL_MECHANISM",
        value_name = "MECHANISM",
        help_heading = "Servers"
    )]
    pub kafka_sasl_mechanism: Option<String>,

    /// Kafka SASL user.
    #[arg(
        long,
        global = true,
        env = "KAFKA_SASL_USERNAME",
        value_name = "USER",
        help_heading = "Servers"
    )]
    pub kafka_sasl_username: Option<String>,

    /// Kafka SASL password, with --kafka-sasl-username (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        help_heading = "Servers"
    )]
    pub kafka_sasl_password: Option<String>,

    /// PEM file of the certificate authorities that signed the brokers' TLS certificates
    /// [default: the system's].
    #[arg(
        long,
        global = true,
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "FILE",
        help_heading = "Servers"
    )]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// S3-compatible endpoint (MinIO, Ceph, R2, ...); plain http:// endpoints are allowed automatically
    /// [default: AWS].
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        value_name = "URL",
        help_heading = "Servers"
    )]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(
        long,
        global = true,
        env = "AWS_REGION",
        value_name = "REGION",
        help_heading = "Servers"
    )]
    pub s3_region: Option<String>,

    /// S3 access key id.
    #[arg(
        long,
        global = true,
        env = "AWS_ACCESS_KEY_ID",
        value_name = "ID",
        help_heading = "Servers"
    )]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        value_name = "KEY",
        help_heading = "Servers"
    )]
    pub s3_secret_access_key: Option<String>,

    /// S3 session token, for temporary credentials (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "AWS_SESSION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Servers"
    )]
    pub s3_session_token: Option<String>,
}
