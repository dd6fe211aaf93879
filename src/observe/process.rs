//! This process's resident memory, from Linux's `/proc` (`None` elsewhere), as `bench` prints
//! it (`/metrics` has the Prometheus client's standard process collector).

/// Resident memory now, in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The most resident memory since the start or the last [`reset_peak`], in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Starts a new peak-memory measurement (resets `VmHWM`).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_has_resident_memory_and_a_peak_above_it() {
        let held = vec![1u8; 8 << 20];
        let now = resident_bytes().unwrap();
        assert!(now > 8 << 20, "{now}");
        assert!(peak_resident_bytes().unwrap() >= now);
        drop(held);
    }
}
