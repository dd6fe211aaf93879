//! One file per subcommand: each turns its arguments and the resolved [`Settings`] into calls
//! on the library and prints the result. [`run`] dispatches.

pub mod bench;
pub mod checkpoints;
pub mod demo;
pub mod generate;
pub mod list;
pub mod maintain;
pub mod produce;
pub mod run;
pub mod run_stream;
pub mod serve;
pub mod sql;
pub mod validate;

use std::collections::HashMap;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::error::Result;
use crate::jobs::Registry;
use crate::progress::Progress;
use crate::project::Project;

/// Runs the parsed command line.
pub async fn run(cli: Cli, progress: Progress) -> Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = Settings::resolve(&cli.global, &env)?;
    crate::query::memory::configure(&settings.memory)?;
    crate::retry::configure(settings.retry_for);
    crate::kafka::configure(settings.kafka_security.clone());
    crate::mysql::configure(settings.mysql_ssl_ca.clone());
    match cli.command {
        Command::Demo(args) => demo::run(&settings, args, &progress).await,
        Command::Run(args) => run::run(&settings, args, &progress).await,
        Command::List(args) => list::run(&settings, args).await,
        Command::Validate => validate::run(&settings).await,
        Command::Sql(args) => sql::run(&settings, args).await,
        Command::Serve(args) => serve::run(&settings, args).await,
        Command::Generate(args) => generate::run(&settings, args).await,
        Command::Produce(args) => produce::run(&settings, args).await,
        Command::Checkpoints(args) => checkpoints::run(&settings, args).await,
        Command::Maintain(args) => maintain::run(&settings, args).await,
        Command::Bench(args) => bench::run(&settings, args).await,
    }
}

/// Loads the project's jobs with the settings' variables.
pub fn load_registry(settings: &Settings) -> Result<Registry> {
    Registry::load(&Project::new(settings.project.clone()), &settings.vars)
}
