//! `quickchat-etl sql`: the interactive shell, or `-e`/`-f` (or SQL piped on standard input)
//! for scripts; `--attach URL` adds a running pipeline's state as `live.<table>`, and with
//! `MYSQL_URL` set the MySQL mirror's tables are `mysql.<table>`.

use std::io::{IsTerminal, Read};

use crate::catalog::Lake;
use crate::cli::SqlArgs;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::query::mysql_mirror::MysqlMirror;
use crate::repl::attach::{LIVE_SCHEMA, attach};
use crate::repl::exec::{execute_text, lake_session};
use crate::repl::run_interactive;

/// Runs the given statements, or the shell when there are none and standard input is a terminal.
pub async fn run(settings: &Settings, args: SqlArgs) -> Result<()> {
    let lake = Lake::new(settings.lake.clone());
    let ctx = lake_session(&lake).await?;
    if let Some(url) = &settings.mysql_url {
        match super::load_registry(settings) {
            Ok(registry) => MysqlMirror::of(&registry, url).await.register(&ctx)?,
            Err(e) => tracing::warn!(error = %e, "the MySQL mirror's tables are not registered"),
        }
    }
    if let Some(url) = &args.attach {
        let tables = attach(&ctx, url).await?;
        let names: Vec<String> = tables.iter().map(|t| format!("{LIVE_SCHEMA}.{t}")).collect();
        eprintln!(
            "attached {url}: {}",
            if names.is_empty() {
                "no state tables (the pipeline keeps no state)".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    let mut out = std::io::stdout().lock();
    if args.execute.is_empty() && args.file.is_empty() {
        if std::io::stdin().is_terminal() {
            drop(out);
            return run_interactive(&lake, ctx, args.format).await;
        }
        let mut script = String::new();
        std::io::stdin()
            .read_to_string(&mut script)
            .map_err(|e| Error::io("standard input", e))?;
        execute_text(&ctx, &script, "stdin", args.format, &mut out).await?;
        return Ok(());
    }
    for statement in &args.execute {
        execute_text(&ctx, statement, "-e", args.format, &mut out).await?;
    }
    for path in &args.file {
        let script = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        execute_text(&ctx, &script, &path.display().to_string(), args.format, &mut out).await?;
    }
    Ok(())
}
