//! The test hook for crashes: `QUICKCHAT_FAULT=<stage>@<epoch>` aborts the process at that
//! point of that epoch, as `kill -9` would. Stages, in the order an epoch passes them:
//! `after-offsets` (its offsets logged), `mid-sinks` (after its first sink write),
//! `after-sinks`, `after-commit` (its commit logged).

use std::sync::OnceLock;

/// Aborts here when `QUICKCHAT_FAULT` names this stage of this epoch.
pub fn fault_point(stage: &str, epoch: u64) {
    static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    let fault = FAULT.get_or_init(|| {
        let text = std::env::var("QUICKCHAT_FAULT").ok()?;
        let (stage, epoch) = text.split_once('@')?;
        Some((stage.to_string(), epoch.parse().ok()?))
    });
    if fault.as_ref().is_some_and(|(s, e)| s == stage && *e == epoch) {
        eprintln!("QUICKCHAT_FAULT: aborting at {stage} of epoch {epoch}");
        std::process::abort();
    }
}
