//! This process's resident memory, read from `/proc/self/statm` (Linux); `None` elsewhere.

/// Resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * page_size())
}

/// The kernel's page size (4 KiB on x86-64; 16 or 64 KiB on some arm64 systems), which
/// `/proc`'s page counts are in.
pub(crate) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Clock ticks per second (`USER_HZ`), which `/proc/*/stat`'s CPU times are in.
pub(crate) fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
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

    #[test]
    fn page_size_and_clock_ticks_come_from_the_kernel() {
        let page = super::page_size();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert!(super::clock_ticks_per_second() >= 1);
    }
}
