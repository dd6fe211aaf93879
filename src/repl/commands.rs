//! The REPL's backslash commands (`\dt`, `\d`, `\timing`, `\format`, `\q`, `\?`).

use crate::cli::OutputFormat;

/// The commands, for completion and `\?`.
pub const NAMES: &[&str] = &["\\dt", "\\d", "\\timing", "\\format", "\\q", "\\?"];

/// Help text for `\?`.
pub const HELP: &str = "\
  \\dt               list lake tables (layer.table)
  \\d <table>        describe a table's columns
  \\timing           toggle statement timing
  \\format <f>       result format: table, csv or json
  \\q                quit (or Ctrl-D)
  Statements end with `;` and may span lines. Ctrl-C cancels a running query.";

/// A parsed backslash command.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaCommand {
    /// `\dt`
    ListTables,
    /// `\d <table>`
    Describe(String),
    /// `\timing`
    ToggleTiming,
    /// `\format <f>`
    Format(OutputFormat),
    /// `\q`
    Quit,
    /// `\?`
    Help,
}

impl MetaCommand {
    /// Parses a line starting with `\`.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.trim().trim_end_matches(';').split_whitespace();
        let command = words.next().unwrap_or_default();
        let argument = words.next();
        match (command, argument) {
            ("\\dt", None) => Ok(MetaCommand::ListTables),
            ("\\d", Some(table)) => Ok(MetaCommand::Describe(table.to_string())),
            ("\\d", None) => Ok(MetaCommand::ListTables),
            ("\\timing", None) => Ok(MetaCommand::ToggleTiming),
            ("\\format", Some("table")) => Ok(MetaCommand::Format(OutputFormat::Table)),
            ("\\format", Some("csv")) => Ok(MetaCommand::Format(OutputFormat::Csv)),
            ("\\format", Some("json")) => Ok(MetaCommand::Format(OutputFormat::Json)),
            ("\\q", None) | ("\\quit", None) => Ok(MetaCommand::Quit),
            ("\\?", None) | ("\\help", None) => Ok(MetaCommand::Help),
            _ => Err(format!("unknown command `{}`; \\? lists the commands", line.trim())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_rejects_unknown_ones() {
        assert_eq!(
            MetaCommand::parse("\\d gold.daily_metrics"),
            Ok(MetaCommand::Describe("gold.daily_metrics".into()))
        );
        assert_eq!(
            MetaCommand::parse("\\format csv"),
            Ok(MetaCommand::Format(OutputFormat::Csv))
        );
        assert_eq!(MetaCommand::parse("\\q"), Ok(MetaCommand::Quit));
        assert!(MetaCommand::parse("\\x").unwrap_err().contains("unknown command"));
    }
}
