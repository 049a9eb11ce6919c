//! The memory policy of a worker under `--memory-limit`: the one place that says at what share
//! of the limit results spill to disk, new tasks pause, and the nanny kills the worker.
//!
//! Plain arithmetic on a limit and three fractions, shared by the worker core (pause, spill),
//! the result store's set-up (spill on its own) and the nanny's supervisor (kill). It must
//! never read memory itself: callers pass the readings in.

use std::time::Duration;

/// Thresholds as fractions of a memory limit, in percent. A limit of 0 means no limit, and
/// then no threshold applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// Bytes; 0 = unlimited.
    limit: u64,
    /// Results spill to disk above this share of the limit: early enough that spilling
    /// (which takes time) keeps the worker below the pause threshold.
    spill_percent: u8,
    /// No new task starts above this share: what runs may still grow.
    pause_percent: u8,
    /// The nanny kills the worker above this share, before the system's OOM killer (which
    /// could pick the nanny) does.
    kill_percent: u8,
}

impl MemoryPolicy {
    /// How often memory is compared with the limit, when there is one: by the worker (pause,
    /// spill) and by the nanny (kill).
    pub const CHECK_EVERY: Duration = Duration::from_millis(100);
    pub const SPILL_PERCENT: u8 = 60;
    pub const PAUSE_PERCENT: u8 = 80;
    pub const KILL_PERCENT: u8 = 95;

    /// The default thresholds (60% spill, 80% pause, 95% kill) of `limit` bytes (0 = none).
    pub fn new(limit: u64) -> MemoryPolicy {
        MemoryPolicy {
            limit,
            spill_percent: Self::SPILL_PERCENT,
            pause_percent: Self::PAUSE_PERCENT,
            kill_percent: Self::KILL_PERCENT,
        }
    }

    /// No limit: nothing spills, pauses or is killed for memory.
    pub fn unlimited() -> MemoryPolicy {
        MemoryPolicy::new(0)
    }

    /// The limit in bytes, 0 when there is none.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn is_limited(&self) -> bool {
        self.limit > 0
    }

    /// Results spill to disk when memory exceeds this many bytes.
    pub fn spill_above(&self) -> Option<u64> {
        self.share(self.spill_percent)
    }

    /// The largest result the store keeps in memory when it is stored: the headroom between
    /// the spill and the kill thresholds (35% of the limit), which is all the room a task can
    /// count on to produce its result while others are held. A larger result written straight
    /// to disk leaves the next task the room its own task took; held in memory, it would not,
    /// and a second one of its size would cross the kill threshold before any spill could run.
    pub fn largest_held_result(&self) -> Option<u64> {
        self.share(self.kill_percent.saturating_sub(self.spill_percent))
    }

    /// No new task starts while memory exceeds this many bytes.
    pub fn pause_above(&self) -> Option<u64> {
        self.share(self.pause_percent)
    }

    /// The nanny kills the worker when its memory exceeds this many bytes.
    pub fn kill_above(&self) -> Option<u64> {
        self.share(self.kill_percent)
    }

    pub fn pause_percent(&self) -> u8 {
        self.pause_percent
    }

    pub fn kill_percent(&self) -> u8 {
        self.kill_percent
    }

    fn share(&self, percent: u8) -> Option<u64> {
        // u128: `limit * percent` may not fit in a u64.
        self.is_limited()
            .then(|| (u128::from(self.limit) * u128::from(percent) / 100) as u64)
    }
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy::unlimited()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_shares_of_the_limit_and_absent_without_one() {
        let p = MemoryPolicy::new(1000);
        assert_eq!(p.spill_above(), Some(600));
        assert_eq!(p.pause_above(), Some(800));
        assert_eq!(p.kill_above(), Some(950));
        assert_eq!(p.largest_held_result(), Some(350));
        let none = MemoryPolicy::unlimited();
        assert_eq!(
            (none.spill_above(), none.pause_above(), none.kill_above()),
            (None, None, None)
        );
        assert_eq!(none.largest_held_result(), None);
        // No overflow near the top of the range.
        assert_eq!(MemoryPolicy::new(u64::MAX).kill_above(), Some(u64::MAX / 100 * 95 + 14));
    }
}
