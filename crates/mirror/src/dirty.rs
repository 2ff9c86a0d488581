//! Whether the kernel may make a buffered writer wait now: the page cache's dirty memory
//! against the point where writers start to be throttled.
//!
//! A write copied into the page cache by the caller ([`crate::uring`]'s inline writes) runs on
//! the daemon's worker thread; when the system holds more dirty pages than the kernel allows
//! (`vm.dirty_background_*` and `vm.dirty_*`), the kernel pauses every writer for up to 200 ms,
//! and a paused worker thread holds up every resource of the node. So a write goes inline only
//! while dirty and writeback memory stay below half of the background threshold, far from the
//! throttling point (midway between the background and the foreground thresholds).
//!
//! The figures come from `/proc/meminfo` and `/proc/sys/vm`, read by the writer that finds the
//! last reading older than [`SAMPLE_INTERVAL`] (a few tens of microseconds, at most ten times a
//! second, and never on an idle daemon). When they cannot be read, writes do not go inline. A
//! memory cgroup's own dirty limits are not looked at.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How old a reading may be before a writer takes a new one.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Below this share of the background threshold, a writer is far from being throttled.
const HEADROOM_PERCENT: u64 = 50;

/// The last reading: whether writers are far from throttling, and when it was taken
/// (microseconds since [`epoch`]; 0 before the first).
static FAR_FROM_THROTTLING: AtomicBool = AtomicBool::new(false);
static SAMPLED_AT: AtomicU64 = AtomicU64::new(0);
static SAMPLING: Mutex<()> = Mutex::new(());

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whether a buffered write is far from being throttled by the kernel now (as of a reading at
/// most [`SAMPLE_INTERVAL`] old).
pub fn far_from_throttling() -> bool {
    let now = (epoch().elapsed().as_micros() as u64).max(1);
    let sampled = SAMPLED_AT.load(Ordering::Acquire);
    if sampled == 0 || now.saturating_sub(sampled) >= SAMPLE_INTERVAL.as_micros() as u64 {
        // One writer reads; the others go by the last reading.
        if let Ok(_sampling) = SAMPLING.try_lock() {
            let far = read_figures().is_some_and(|figures| figures.far_from_throttling());
            FAR_FROM_THROTTLING.store(far, Ordering::Release);
            SAMPLED_AT.store(now, Ordering::Release);
        }
    }
    FAR_FROM_THROTTLING.load(Ordering::Acquire)
}

/// What decides it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    /// Dirty and under writeback now.
    dirty: u64,
    /// What the kernel counts dirty limits against: free memory and the file cache.
    dirtyable: u64,
    /// `vm.dirty_background_bytes`, or 0 when the ratio applies.
    background_bytes: u64,
    /// `vm.dirty_background_ratio`, percent.
    background_ratio: u64,
}

impl Figures {
    fn background_threshold(&self) -> u64 {
        if self.background_bytes > 0 {
            self.background_bytes
        } else {
            self.dirtyable / 100 * self.background_ratio
        }
    }

    fn far_from_throttling(&self) -> bool {
        self.dirty < self.background_threshold() / 100 * HEADROOM_PERCENT
    }
}

fn read_figures() -> Option<Figures> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let sysctl = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    parse(
        &meminfo,
        sysctl("dirty_background_bytes")?,
        sysctl("dirty_background_ratio")?,
    )
}

/// The figures from `/proc/meminfo`'s text and the two sysctls.
fn parse(meminfo: &str, background_bytes: u64, background_ratio: u64) -> Option<Figures> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
        })?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(Figures {
        dirty: field("Dirty")? + field("Writeback")?,
        dirtyable: field("MemFree")? + field("Active(file)")? + field("Inactive(file)")?,
        background_bytes,
        background_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24000000 kB\n\
        MemFree:        10000000 kB\n\
        Active(file):    4000000 kB\n\
        Inactive(file):  6000000 kB\n\
        Dirty:            200000 kB\n\
        Writeback:         50000 kB\n\
        WritebackTmp:          0 kB\n";

    #[test]
    fn dirty_memory_is_weighed_against_half_the_background_threshold() {
        let figures = parse(MEMINFO, 0, 10).unwrap();
        assert_eq!(figures.dirty, 250_000 * 1024);
        assert_eq!(figures.dirtyable, 20_000_000 * 1024);
        // 10 % of 20 GB is 2 GB; half of it is far above 250 MB.
        assert!(figures.far_from_throttling());
        // A 300 MB background threshold: 250 MB dirty is past half of it.
        let tight = parse(MEMINFO, 300_000 * 1024, 10).unwrap();
        assert!(!tight.far_from_throttling());
    }

    #[test]
    fn unreadable_figures_are_no_figures() {
        assert_eq!(parse("MemFree: 1 kB\n", 0, 10), None);
        assert_eq!(parse("Dirty: lots kB\n", 0, 10), None);
    }

    #[test]
    fn this_machine_s_figures_read() {
        assert!(
            read_figures().is_some(),
            "/proc/meminfo and /proc/sys/vm read"
        );
        far_from_throttling();
        assert_ne!(SAMPLED_AT.load(Ordering::Acquire), 0, "a reading was taken");
    }
}
