//! The interactive SQL shell (`quickchat-etl sql`): every lake table registered as
//! `<layer>.<table>`, line editing with history and completion, backslash commands, timing,
//! and Ctrl-C cancelling the running query rather than the shell.

pub mod attach;
pub mod commands;
pub mod exec;
pub mod helper;

use std::io::Write;
use std::path::PathBuf;

use datafusion::prelude::SessionContext;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use crate::catalog::Lake;
use crate::cli::OutputFormat;
use crate::error::{Error, Result};
use commands::{HELP, MetaCommand};
use helper::ReplHelper;

/// The query behind `\\dt`.
const LIST_TABLES: &str = include_str!("list_tables.sql");

/// Runs the shell until `\q` or Ctrl-D.
pub async fn run_interactive(lake: &Lake, ctx: SessionContext, mut format: OutputFormat) -> Result<()> {
    let mut editor: Editor<ReplHelper, FileHistory> =
        Editor::with_config(Config::builder().auto_add_history(false).build())
            .map_err(|e| Error::Internal(format!("terminal: {e}")))?;
    editor.set_helper(Some(ReplHelper {
        names: completion_names(lake).await,
    }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("quickchat-etl SQL on {} — \\? for help, \\q to quit", lake.root());
    let mut timing = true;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "quickchat> "
        } else {
            "       ..> "
        };
        let line = match tokio::task::block_in_place(|| editor.readline(prompt)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Internal(format!("terminal: {e}"))),
        };
        if buffer.is_empty() && line.trim_start().starts_with('\\') {
            let _ = editor.add_history_entry(line.as_str());
            match MetaCommand::parse(&line) {
                Ok(MetaCommand::Quit) => break,
                Ok(MetaCommand::Help) => println!("{HELP}"),
                Ok(MetaCommand::ToggleTiming) => {
                    timing = !timing;
                    println!("timing {}", if timing { "on" } else { "off" });
                }
                Ok(MetaCommand::Format(new_format)) => format = new_format,
                Ok(MetaCommand::ListTables) => run_statement(&ctx, LIST_TABLES, format, false).await,
                Ok(MetaCommand::Describe(table)) => {
                    run_statement(&ctx, &format!("DESCRIBE {table}"), format, false).await
                }
                Err(message) => eprintln!("{message}"),
            }
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(statement.trim());
        run_statement(&ctx, &statement, format, timing).await;
        if let Some(helper) = editor.helper_mut() {
            helper.names = completion_names(lake).await;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs statements, printing results or the error. The statements run in their own task so
/// that Ctrl-C is noticed even while a query keeps a thread busy; the task is then aborted.
async fn run_statement(ctx: &SessionContext, sql: &str, format: OutputFormat, timing: bool) {
    let (ctx, sql) = (ctx.clone(), sql.to_string());
    let mut work = tokio::spawn(async move {
        let mut out = std::io::stdout();
        let result = exec::execute_text(&ctx, &sql, "repl", format, &mut out).await;
        let _ = out.flush();
        result
    });
    tokio::select! {
        finished = &mut work => match finished {
            Ok(Ok(results)) if timing => {
                for r in results {
                    println!("{} row(s) in {:.3}s", r.rows, r.elapsed.as_secs_f64());
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(Error::Sql { message, .. })) => eprintln!("error: {message}"),
            Ok(Err(e)) => eprintln!("error: {e}"),
            Err(e) => eprintln!("error: the query stopped: {e}"),
        },
        _ = tokio::signal::ctrl_c() => {
            work.abort();
            eprintln!("query cancelled");
        }
    }
}

async fn completion_names(lake: &Lake) -> Vec<String> {
    let tables = lake.list_tables().await.unwrap_or_default();
    let mut names: Vec<String> = tables.iter().map(ToString::to_string).collect();
    let mut layers: Vec<String> = tables.iter().map(|t| t.layer.clone()).collect();
    layers.dedup();
    names.extend(layers);
    names
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".quickchat_etl_history"))
}
