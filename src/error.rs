//! Errors of quickchat-etl and the process exit codes they map to.
//!
//! Variants are named by what went wrong and carry the job, table, file or source they concern,
//! so a log line alone tells an on-call engineer where to look. [`ExitCode`] is the one place
//! the exit codes are defined; the README's table is generated from the same list by reading it.

use std::fmt;

/// Result type used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Interrupted by Ctrl-C or SIGTERM before finishing.
    Interrupted = 130,
}

impl ExitCode {
    /// Every exit code with a one-line meaning, in the order the README lists them.
    pub const ALL: [(ExitCode, &'static str); 7] = [
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
    },

    /// Reading the lake (listing, opening a Delta table) failed.
    #[error("lake {location}: {message}")]
    Lake {
        /// The lake root or table URL.
        location: String,
        /// What went wrong.
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

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Config(_) => ExitCode::Config,
            Error::DataQuality { .. } => ExitCode::DataQuality,
            Error::Interrupted => ExitCode::Interrupted,
            Error::Internal(_) => ExitCode::Internal,
            Error::Sql { .. }
            | Error::Source { .. }
            | Error::Sink { .. }
            | Error::Lake { .. }
            | Error::UpstreamFailed { .. }
            | Error::Io { .. } => ExitCode::JobFailed,
        }
    }

    /// Whether running the same command again later may succeed without a change by the user.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Source { retryable, .. } | Error::Sink { retryable, .. } => *retryable,
            Error::Lake { .. } => true,
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
    fn exit_codes_are_distinct() {
        let mut codes: Vec<u8> = ExitCode::ALL.iter().map(|(c, _)| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ExitCode::ALL.len());
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
