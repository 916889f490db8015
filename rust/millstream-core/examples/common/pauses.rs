//! What `dedup_pauses` and `stale_pauses` report: per phase (while the structure fills, then
//! once it is full), the mean time of one call, the longest one and at which key, and how
//! many took over a millisecond.

use std::time::Duration;

#[derive(Default)]
struct Phase {
    total: Duration,
    longest: Duration,
    longest_at: usize,
    over_1ms: u32,
    timed: u32,
}

/// Timings of the fill (keys below `capacity`) and of the full structure.
pub struct Pauses {
    capacity: usize,
    phases: [Phase; 2],
}

impl Pauses {
    pub fn new(capacity: usize) -> Pauses {
        Pauses {
            capacity,
            phases: Default::default(),
        }
    }

    /// Key `i` took `took`.
    pub fn record(&mut self, i: usize, took: Duration) {
        let p = &mut self.phases[usize::from(i >= self.capacity)];
        p.total += took;
        p.timed += 1;
        if took > p.longest {
            (p.longest, p.longest_at) = (took, i);
        }
        if took > Duration::from_millis(1) {
            p.over_1ms += 1;
        }
    }

    /// One line per phase; `what` names the calls ("admits", "updates").
    pub fn print(&self, what: &str) {
        for (p, phase) in self.phases.iter().zip(["while filling", "at capacity"]) {
            println!(
                "{phase} ({} {what}): mean {:.0} ns, longest {:.1} us (key {}), {} over 1 ms",
                p.timed,
                p.total.as_nanos() as f64 / f64::from(p.timed.max(1)),
                p.longest.as_nanos() as f64 / 1e3,
                p.longest_at,
                p.over_1ms,
            );
        }
    }
}
