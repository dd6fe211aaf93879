//! Line editing help for the REPL: completion of lake table names, layers, backslash commands
//! and common SQL keywords.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "AND",
    "OR",
    "NOT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "DISTINCT",
    "WITH",
    "UNION ALL",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DESCRIBE",
    "EXPLAIN",
    "SHOW TABLES",
    "date_trunc",
    "approx_percentile_cont",
];

/// Completion candidates, refreshed when tables change.
#[derive(Default)]
pub struct ReplHelper {
    /// `layer.table` names and layer names.
    pub names: Vec<String>,
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '\\'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let lower = word.to_ascii_lowercase();
        let commands = super::commands::NAMES.iter().map(|c| c.to_string());
        let keywords = KEYWORDS.iter().map(|k| k.to_string());
        let candidates = self
            .names
            .iter()
            .cloned()
            .chain(commands)
            .chain(keywords)
            .filter(|c| c.to_ascii_lowercase().starts_with(&lower))
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use rustyline::history::DefaultHistory;

    use super::*;

    #[test]
    fn completes_table_names_after_a_layer_prefix() {
        let helper = ReplHelper {
            names: vec!["gold.daily_metrics".into(), "gold.ml_features".into(), "gold".into()],
        };
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, found) = helper.complete("select * from gold.d", 20, &ctx).unwrap();
        assert_eq!(start, 14);
        assert_eq!(
            found.iter().map(|p| p.replacement.as_str()).collect::<Vec<_>>(),
            ["gold.daily_metrics"]
        );
    }
}
