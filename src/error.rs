//! Errors of quickchat-etl and the process exit codes they map to.
//!
//! Variants are named by what went wrong and carry the job, table, file or source they concern,
//! so a log line alone tells an on-call engineer where to look, and the error that caused them
//! (`std::error::Error::source`). [`ExitCode`] is the one place the exit codes are defined; a
//! test checks that the README's table and `--help` say the same.

use std::fmt;

/// Result type used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error that caused another, kept for its chain of causes.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// The process exit codes, as documented in the README (an Airflow BashOperator reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Everything asked for was done.
    Success = 0,
    /// An unexpected internal error: a bug, please report it.
    Internal = 1,
    /// Bad command-line usage (unknown flag, malformed date, ...).
    Usage = 2,
    /// Invalid configuration: pipeline files, SQL files, environment, config file.
    Config = 3,
    /// A job failed while running: a source, the SQL, a sink or storage.
    JobFailed = 4,
    /// A data-quality expectation with `on_violation = "fail"` was violated; nothing was written.
    DataQuality = 5,
    /// A streaming pipeline's checkpoint is damaged or does not fit the pipeline: retrying
    /// cannot help; reset it (`checkpoints <pipeline> --reset`) or restore the pipeline.
    State = 6,
    /// Interrupted by Ctrl-C or SIGTERM before finishing.
    Interrupted = 130,
}

impl ExitCode {
    /// Every exit code with a one-line meaning, in the order the README lists them.
    pub const ALL: [(ExitCode, &'static str); 8] = [
        (ExitCode::Success, "success"),
        (ExitCode::Internal, "internal error (a bug)"),
        (ExitCode::Usage, "usage error: bad flags or arguments"),
        (
            ExitCode::Config,
            "configuration error: pipeline/SQL files, environment, config file",
        ),
        (ExitCode::JobFailed, "job failed: source, SQL, sink or storage error"),
        (
            ExitCode::DataQuality,
            "data-quality failure: a `fail` expectation was violated",
        ),
        (
            ExitCode::State,
            "state error: a checkpoint is damaged or does not fit the pipeline; retrying cannot help",
        ),
        (ExitCode::Interrupted, "interrupted (Ctrl-C / SIGTERM)"),
    ];

    /// The numeric code handed to the operating system.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One problem found in configuration; many are reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the problem is in, when there is one.
    pub file: Option<String>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem in a named file.
    pub fn in_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: Some(file.into()),
            message: message.into().trim_end().to_string(),
        }
    }

    /// A problem not tied to a file (an environment variable, a flag).
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            file: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A violated `fail` expectation: the rule and how many rows broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The expectation's name from the pipeline file.
    pub rule: String,
    /// Rows that violated it.
    pub rows: u64,
}

/// Everything that can go wrong in quickchat-etl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line usage that clap could not catch (e.g. `--from` after `--to`).
    #[error("{0}")]
    Usage(String),

    /// One or more configuration problems, reported all at once.
    #[error("{}", format_problems(.0))]
    Config(Vec<ConfigProblem>),

    /// A SQL file failed to parse, plan or execute.
    #[error("job `{job}`: SQL in {file}: {message}")]
    Sql {
        /// The job whose SQL failed.
        job: String,
        /// The SQL file.
        file: String,
        /// DataFusion's message, possibly with a hint appended.
        message: String,
        /// DataFusion's error.
        #[source]
        cause: Option<Cause>,
    },

    /// Computing over the data failed (a value that does not fit, an overflow): the data or the
    /// query, not a bug.
    #[error("{context}: {cause}")]
    Compute {
        /// What was being computed, for which output or table.
        context: String,
        /// The Arrow or DataFusion error.
        #[source]
        cause: Cause,
    },

    /// A source could not be read (file, MySQL, Kafka).
    #[error("source `{source_name}` ({location}): {message}")]
    Source {
        /// The source's table name in the pipeline file.
        source_name: String,
        /// Where it reads from: a path, a URL without password, a topic.
        location: String,
        /// What went wrong and what to do.
        message: String,
        /// Whether trying again later may succeed (server away, network).
        retryable: bool,
        /// The client's error, when there is one.
        #[source]
        cause: Option<Cause>,
    },

    /// A sink could not be written.
    #[error("sink {table}: {message}")]
    Sink {
        /// The table or path written.
        table: String,
        /// What went wrong.
        message: String,
        /// Whether trying again later may succeed.
        retryable: bool,
        /// The client's error, when there is one.
        #[source]
        cause: Option<Cause>,
    },

    /// Reading the lake (listing, opening a Delta table) failed.
    #[error("lake {location}: {message}")]
    Lake {
        /// The lake root or table URL.
        location: String,
        /// What went wrong.
        message: String,
    },

    /// A streaming checkpoint is damaged or does not fit the pipeline (its SQL changed under
    /// saved state, a snapshot of another format): fatal, retrying cannot help.
    #[error("checkpoint {location}: {message}")]
    State {
        /// The checkpoint folder.
        location: String,
        /// What is wrong and how to start over.
        message: String,
    },

    /// `fail` expectations were violated; the job wrote nothing.
    #[error("job `{job}`: data-quality failure: {}", format_violations(.violations))]
    DataQuality {
        /// The job.
        job: String,
        /// The violated rules.
        violations: Vec<RuleViolation>,
    },

    /// A job could not run because a job it depends on failed earlier in the same run.
    #[error("job `{job}` skipped: upstream job `{upstream}` failed")]
    UpstreamFailed {
        /// The skipped job.
        job: String,
        /// The failed job it depends on.
        upstream: String,
    },

    /// An operation failed for longer than the retries allow (`--retry-for`).
    #[error("{what}: gave up after {tries} tries in {seconds} s (--retry-for {limit}): {cause}")]
    GaveUp {
        /// What was tried, with where.
        what: String,
        /// How many times it was tried.
        tries: u32,
        /// How long it was tried for.
        seconds: u64,
        /// The bound, as given.
        limit: String,
        /// The last failure.
        #[source]
        cause: Box<Error>,
    },

    /// Local I/O on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The user interrupted the run.
    #[error("interrupted")]
    Interrupted,

    /// An internal error: should not happen; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whether `error`, or anything that caused it, is a failure that passes by itself: a full
/// disk, a connection refused, reset or timed out, a storage request that failed after the
/// store's own retries. (Permissions, missing objects and bad data are not.)
pub fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::StorageFull
                    | ErrorKind::QuotaExceeded
                    | ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::Interrupted
            )
        {
            return true;
        }
        if let Some(object_store::Error::Generic { .. }) = e.downcast_ref::<object_store::Error>() {
            return true;
        }
        next = e.source();
    }
    false
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Config(_) => ExitCode::Config,
            Error::DataQuality { .. } => ExitCode::DataQuality,
            Error::State { .. } => ExitCode::State,
            Error::Interrupted => ExitCode::Interrupted,
            Error::Internal(_) => ExitCode::Internal,
            Error::Sql { .. }
            | Error::Compute { .. }
            | Error::Source { .. }
            | Error::Sink { .. }
            | Error::Lake { .. }
            | Error::UpstreamFailed { .. }
            | Error::GaveUp { .. }
            | Error::Io { .. } => ExitCode::JobFailed,
        }
    }

    /// The kind of error, as metrics label it (`quickchat_retries_total{error}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Config(_) => "config",
            Error::Sql { .. } => "sql",
            Error::Compute { .. } => "compute",
            Error::Source { .. } => "source",
            Error::Sink { .. } => "sink",
            Error::Lake { .. } => "lake",
            Error::State { .. } => "state",
            Error::DataQuality { .. } => "data_quality",
            Error::UpstreamFailed { .. } => "upstream_failed",
            Error::GaveUp { .. } => "gave_up",
            Error::Io { .. } => "io",
            Error::Interrupted => "interrupted",
            Error::Internal(_) => "internal",
        }
    }

    /// Whether running the same command again later may succeed without a change by the user.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Source { retryable, .. } | Error::Sink { retryable, .. } => *retryable,
            Error::Lake { .. } | Error::GaveUp { .. } => true,
            _ => false,
        }
    }

    /// Shorthand for a single configuration problem in a file.
    pub fn config_in(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config(vec![ConfigProblem::in_file(file, message)])
    }

    /// Shorthand for a single configuration problem not tied to a file.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(vec![ConfigProblem::general(message)])
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }

    /// A failed computation over data, with what it was for.
    pub fn compute(context: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Compute {
            context: context.into(),
            cause: cause.into(),
        }
    }

    /// What to do about an error whose cause is plain but whose remedy is not in its message:
    /// a query that ran out of the memory pool (DataFusion's "Resources exhausted", wherever
    /// it surfaced: a job's SQL, a Delta write) needs a larger `--memory-limit`.
    pub fn hint(&self) -> Option<String> {
        self.to_string().contains("Resources exhausted").then(|| {
            format!(
                "the run needs more memory than --memory-limit ({}) allows, even spilling to disk: \
                 raise --memory-limit (or [engine] memory_limit in the config file)",
                crate::config::describe_bytes(crate::query::memory::limit())
            )
        })
    }

    /// A failed SQL file of a job, keeping DataFusion's error.
    pub fn sql(job: &str, file: &str, cause: datafusion::error::DataFusionError) -> Self {
        Error::Sql {
            job: job.to_string(),
            file: file.to_string(),
            message: cause.to_string(),
            cause: Some(Box::new(cause)),
        }
    }
}

fn format_problems(problems: &[ConfigProblem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut text = format!("{} configuration problems:", many.len());
            for problem in many {
                text.push_str("\n  - ");
                text.push_str(&problem.to_string());
            }
            text
        }
    }
}

fn format_violations(violations: &[RuleViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("rule `{}` violated by {} row(s)", v.rule, v.rows))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_deep_in_a_parquet_error_passes_and_a_missing_object_does_not() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let store = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(full),
        };
        let parquet = parquet::errors::ParquetError::External(Box::new(store));
        assert!(is_transient(&parquet));
        let missing = object_store::Error::NotFound {
            path: "lake/bronze/x".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        assert!(!is_transient(&parquet::errors::ParquetError::External(Box::new(
            missing
        ))));
        assert!(!is_transient(&parquet::errors::ParquetError::General(
            "bad page".into()
        )));
    }

    /// The README's exit-code table, as (code, meaning) rows.
    fn readme_exit_codes() -> Vec<(u8, String)> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("### Exit codes")
            .nth(1)
            .expect("the README has an `### Exit codes` section");
        table
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.parse::<u8>().ok()?;
                Some((code, cells.get(2)?.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_readme_and_help_list_every_exit_code_with_its_meaning() {
        let readme = readme_exit_codes();
        let codes: Vec<u8> = ExitCode::ALL.iter().map(|(c, _)| c.code()).collect();
        assert_eq!(
            readme.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            codes,
            "README codes in order"
        );
        for ((code, meaning), (_, readme_meaning)) in ExitCode::ALL.iter().zip(&readme) {
            assert!(
                readme_meaning.starts_with(meaning),
                "exit {}: the README says `{readme_meaning}`, ExitCode::ALL `{meaning}`",
                code.code()
            );
        }
        use clap::CommandFactory;
        let help = crate::cli::Cli::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for (code, meaning) in ExitCode::ALL {
            let short = meaning.split([':', '(']).next().unwrap().trim();
            assert!(
                help.contains(&format!("{} {short}", code.code())),
                "--help lacks `{} {short}`:\n{help}",
                code.code()
            );
        }
    }

    #[test]
    fn many_config_problems_are_listed_one_per_line() {
        let err = Error::Config(vec![
            ConfigProblem::in_file("pipelines/a.toml", "unknown key `foo`"),
            ConfigProblem::general("DATA_LAKE_PATH is empty"),
        ]);
        let text = err.to_string();
        assert!(text.starts_with("2 configuration problems:"), "{text}");
        assert!(text.contains("\n  - pipelines/a.toml: unknown key `foo`"), "{text}");
        assert_eq!(err.exit_code(), ExitCode::Config);
    }
}
