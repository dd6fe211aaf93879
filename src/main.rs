//! The `quickchat-etl` binary: parse arguments, set up logging, run the command, and turn an
//! error into its documented exit code (see `ExitCode`).

use clap::Parser;
use quickchat_etl::cli::{Cli, LogFormat};
use quickchat_etl::{ExitCode, commands, progress};

fn main() -> std::process::ExitCode {
    cap_malloc_arenas();
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
                LogFormat::Json => tracing::error!(
                    exit_code = code.code(),
                    retryable = error.is_retryable(),
                    hint = error.hint().unwrap_or_default(),
                    "{error}"
                ),
                LogFormat::Text => {
                    eprintln!("error: {error}");
                    if let Some(hint) = error.hint() {
                        eprintln!("hint: {hint}");
                    }
                }
            }
            std::process::ExitCode::from(code.code())
        }
    }
}

/// glibc's malloc gives each thread that allocates its own arena (up to 8 per core) and they
/// fragment under a long-running stream's mix of runtime and writer threads: in a 5-minute soak
/// with flat state, RSS grew 510 → 606 MB; with 2 arenas it stayed at 410–413 MB, and the files
/// benchmark ran faster. (mimalloc was tried too: 1.2–1.7 GB.) Must run before any thread starts.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
