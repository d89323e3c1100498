//! CPU time from `/proc` (Linux): this process's, or the calling thread's (the load generator
//! runs on its own thread so its cost can be told apart from the bot's); `None` elsewhere.

use std::time::Duration;

/// User + system CPU time consumed by this process so far.
pub fn process_cpu() -> Option<Duration> {
    cpu_from_stat("/proc/self/stat")
}

/// User + system CPU time consumed by the calling thread so far (one clock tick's resolution, 10 ms
/// where `USER_HZ` is 100).
pub fn thread_cpu() -> Option<Duration> {
    cpu_from_stat("/proc/thread-self/stat")
}

fn cpu_from_stat(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / crate::rss::clock_ticks_per_second() as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_is_charged_its_own_cpu_only() {
        let Some(before) = thread_cpu() else {
            eprintln!("SKIPPED a_busy_thread_is_charged_its_own_cpu_only: no /proc/thread-self");
            return;
        };
        // Spin until this thread is charged 100 ms, however busy the machine (a wall-clock
        // spin got 90 ms of CPU in 200 ms beside a build): a reading that never moves fails.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        let mut used = Duration::ZERO;
        while used < Duration::from_millis(100) && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(1);
            }
            used = thread_cpu().expect("read twice") - before;
        }
        std::hint::black_box(x);
        assert!(
            used >= Duration::from_millis(100),
            "{used:?} in 20 s of spinning"
        );
        let idle = std::thread::spawn(|| {
            let before = thread_cpu().expect("thread stat");
            std::thread::sleep(Duration::from_millis(200));
            thread_cpu().expect("thread stat") - before
        })
        .join()
        .expect("thread");
        assert!(idle <= Duration::from_millis(20), "{idle:?}");
    }
}
