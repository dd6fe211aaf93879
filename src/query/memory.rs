//! The memory every query of the process shares: one DataFusion memory pool of
//! `--memory-limit` bytes (`[engine] memory_limit`, default three quarters of the machine's
//! memory) with spilling to `--spill-dir` (default the system's temporary folder). Sorts,
//! hash joins and aggregations that reach their share spill; a query that cannot fit even so
//! fails with DataFusion's "Resources exhausted", which [`crate::error::Error::hint`] explains
//! with the limit, instead of the kernel killing the process.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::error::{Error, Result};

/// How much memory the queries may use and where they spill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySettings {
    /// Bytes the memory pool holds.
    pub limit: u64,
    /// Where spill files go (`None`: the system's temporary folder).
    pub spill_dir: Option<PathBuf>,
}

impl MemorySettings {
    /// Three quarters of the machine's memory (8 GiB where it cannot be read).
    pub fn default_limit() -> u64 {
        machine_memory().map_or(8 << 30, |bytes| bytes / 4 * 3)
    }
}

/// The machine's memory in bytes (Linux's `MemTotal`), when it can be read.
pub fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

static RUNTIME: OnceLock<(Arc<RuntimeEnv>, u64)> = OnceLock::new();

/// Sets the process's memory pool; the first call wins (commands call it once at start).
pub fn configure(settings: &MemorySettings) -> Result<()> {
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let runtime = build(settings)?;
    let _ = RUNTIME.set((runtime, settings.limit));
    Ok(())
}

/// The runtime sessions are built on: the configured one, else one with the default limit.
pub fn runtime() -> Arc<RuntimeEnv> {
    RUNTIME
        .get_or_init(|| {
            let settings = MemorySettings {
                limit: MemorySettings::default_limit(),
                spill_dir: None,
            };
            let runtime = build(&settings).expect("a runtime with the system's temporary folder");
            (runtime, settings.limit)
        })
        .0
        .clone()
}

/// The memory limit in force, in bytes.
pub fn limit() -> u64 {
    runtime();
    RUNTIME.get().map_or(0, |(_, limit)| *limit)
}

fn build(settings: &MemorySettings) -> Result<Arc<RuntimeEnv>> {
    // The fair pool gives each spilling operator an equal share, so one large sort cannot
    // starve a join beside it; the tracking wrapper names the top consumers in its error.
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(settings.limit as usize),
        NonZeroUsize::new(5).expect("non-zero"),
    );
    let mut builder = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(pool));
    if let Some(dir) = &settings.spill_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        builder = builder.with_temp_file_path(dir.clone());
    }
    builder
        .build_arc()
        .map_err(|e| Error::config(format!("memory pool and spill folder: {e}")))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// A session on its own pool (the process's pool is shared by every other test).
    fn session_with_limit(limit: u64, spill_dir: &std::path::Path) -> SessionContext {
        let runtime = build(&MemorySettings {
            limit,
            spill_dir: Some(spill_dir.to_path_buf()),
        })
        .unwrap();
        let config = SessionConfig::new()
            .with_target_partitions(1)
            .set_usize("datafusion.execution.sort_spill_reservation_bytes", 4 << 20);
        SessionContext::new_with_config_rt(config, runtime)
    }

    const SORT: &str = "SELECT v FROM (SELECT (value * 7919) % 1000003 AS v, repeat('x', 40) AS pad FROM generate_series(1, 1000000)) ORDER BY v, pad";

    #[tokio::test]
    async fn a_sort_larger_than_the_limit_spills_and_gives_every_row_in_order() {
        let spill = tempfile::tempdir().unwrap();
        let ctx = session_with_limit(32 << 20, spill.path());
        let batches = ctx.sql(SORT).await.unwrap().collect().await.unwrap();
        let values: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
                column.values().to_vec()
            })
            .collect();
        assert_eq!(values.len(), 1_000_000);
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "sorted");
        let spilled = ctx.runtime_env().disk_manager.used_disk_space();
        assert!(
            spilled > 0 || std::fs::read_dir(spill.path()).unwrap().count() > 0,
            "it spilled"
        );
    }

    #[tokio::test]
    async fn a_query_that_cannot_fit_fails_with_the_limit_and_what_to_do() {
        let spill = tempfile::tempdir().unwrap();
        let ctx = session_with_limit(64 << 10, spill.path());
        let failed = ctx.sql(SORT).await.unwrap().collect().await.unwrap_err();
        let error = Error::sql("gold-example", "sql/gold/example.sql", failed);
        assert!(error.to_string().contains("gold-example"), "{error}");
        let hint = error.hint().expect("a hint");
        assert!(hint.contains("--memory-limit"), "{hint}");
        assert_eq!(error.exit_code(), crate::error::ExitCode::JobFailed);
    }
}
