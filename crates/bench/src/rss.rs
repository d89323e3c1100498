//! This process's resident memory, read from `/proc/self/statm` (Linux); `None` elsewhere.

/// Resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

fn page_size() -> u64 {
    // The kernel reports it in auxv, which std does not expose; 4 KiB is the page size of
    // every x86-64 and most arm64 Linux systems.
    4096
}

/// Bytes as megabytes (MiB), for reports.
pub fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_grows_when_memory_is_touched() {
        let Some(before) = super::rss_bytes() else {
            return; // not Linux
        };
        let block = vec![1u8; 64 * 1024 * 1024];
        let after = super::rss_bytes().unwrap();
        assert!(after > before + 32 * 1024 * 1024, "{before} → {after}");
        drop(block);
    }
}
