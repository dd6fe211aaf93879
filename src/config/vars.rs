//! `${VAR}` and `${VAR:-default}` expansion in pipeline and configuration files.
//!
//! Values come from [`Vars`]: the `[vars]` table of the configuration file, overridden by the
//! process environment, overridden by flags. As in a POSIX shell, `${VAR:-default}` uses the
//! default when the variable is unset *or empty*; `$$` is a literal `$`; a `$` not followed by
//! `{` is kept as is. Expansion happens on parsed string values, never on raw TOML text, so a
//! value containing quotes cannot break the file.

use std::collections::HashMap;

/// The variables visible to `${VAR}` expansion.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    values: HashMap<String, String>,
}

impl Vars {
    /// Variables from the configuration file, overridden by the given environment.
    pub fn layered(
        file_vars: impl IntoIterator<Item = (String, String)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut values: HashMap<String, String> = file_vars.into_iter().collect();
        values.extend(env);
        Self { values }
    }

    /// Sets (or overrides) one variable; flags use this to win over the environment.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// The value of a variable, `None` when unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a variable, `None` when unset or empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// Expands every `${...}` in `text`, or explains the first problem found.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
            } else if let Some(body_and_rest) = after.strip_prefix('{') {
                let end = body_and_rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
                out.push_str(&self.expand_one(&body_and_rest[..end])?);
                rest = &body_and_rest[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn expand_one(&self, body: &str) -> Result<String, String> {
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{body}}}` is not a variable reference (use ${{NAME}} or ${{NAME:-default}})"
            ));
        }
        match (self.non_empty(name), default) {
            (Some(value), _) => Ok(value.to_string()),
            (None, Some(default)) => Ok(default.to_string()),
            (None, None) => match self.get(name) {
                Some(empty) => Ok(empty.to_string()),
                None => Err(format!(
                    "${{{name}}} is not set: export {name}=..., add it under [vars] in the config \
                     file, or write ${{{name}:-default}}"
                )),
            },
        }
    }
}

/// Expands `${...}` in every string inside a parsed TOML value, collecting one message per bad
/// string (prefixed with its key path, e.g. `sources.users.url`).
pub fn expand_toml(value: &mut toml::Value, vars: &Vars, path: &str, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(text) => match vars.expand(text) {
            Ok(expanded) => *text = expanded,
            Err(message) => problems.push(format!("`{path}`: {message}")),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_toml(item, vars, &format!("{path}[{i}]"), problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand_toml(item, vars, &child, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::layered(
            [
                ("FROM_FILE".to_string(), "file".to_string()),
                ("BOTH".to_string(), "file".to_string()),
            ],
            [
                ("BOTH".to_string(), "env".to_string()),
                ("EMPTY".to_string(), String::new()),
            ],
        )
    }

    #[test]
    fn environment_overrides_file_and_defaults_apply_when_unset_or_empty() {
        let v = vars();
        assert_eq!(v.expand("${BOTH}/${FROM_FILE}").unwrap(), "env/file");
        assert_eq!(v.expand("${MISSING:-dflt}").unwrap(), "dflt");
        assert_eq!(v.expand("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(v.expand("${EMPTY}").unwrap(), "");
        assert_eq!(v.expand("${MISSING:-}").unwrap(), "");
    }

    #[test]
    fn dollars_without_braces_are_literal() {
        let v = vars();
        assert_eq!(v.expand("cost $5 and $$ and $").unwrap(), "cost $5 and $ and $");
    }

    #[test]
    fn unset_and_malformed_references_are_errors_that_say_how_to_fix_them() {
        let v = vars();
        let err = v.expand("x${MISSING}y").unwrap_err();
        assert!(err.contains("${MISSING} is not set"), "{err}");
        assert!(v.expand("${UNCLOSED").unwrap_err().contains("unclosed"));
        assert!(
            v.expand("${bad name}")
                .unwrap_err()
                .contains("not a variable reference")
        );
    }

    #[test]
    fn toml_expansion_reports_key_paths() {
        let mut value: toml::Value =
            toml::from_str("[sources.users]\nurl = \"${NOPE}\"\nlist = [\"${BOTH}\"]").unwrap();
        let mut problems = Vec::new();
        expand_toml(&mut value, &vars(), "", &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("`sources.users.url`"), "{problems:?}");
        assert_eq!(value["sources"]["users"]["list"][0].as_str(), Some("env"));
    }
}
