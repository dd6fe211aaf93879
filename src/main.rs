//! The `quickchat-etl` binary: parse arguments, set up logging, run the command, and turn an
//! error into its documented exit code (see `ExitCode`).

use clap::Parser;
use quickchat_etl::cli::{Cli, LogFormat};
use quickchat_etl::{ExitCode, commands, progress};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_format = cli.global.log_format;
    let progress = progress::init(log_format, &cli.global.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(ExitCode::Internal.code());
        }
    };
    match runtime.block_on(commands::run(cli, progress)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let code = error.exit_code();
            match log_format {
                // Log collectors get one JSON event; people get one plain line.
                LogFormat::Json => {
                    tracing::error!(exit_code = code.code(), retryable = error.is_retryable(), "{error}")
                }
                LogFormat::Text => eprintln!("error: {error}"),
            }
            std::process::ExitCode::from(code.code())
        }
    }
}
