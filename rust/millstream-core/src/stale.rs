//! Stale-update guard: per entity key, drop an update whose version is older than the
//! newest one seen (Odoo's `write_date` is the natural version; two writes close together can
//! arrive out of order). Bounded: at capacity the least recently touched entity is forgotten
//! for each new one, after which a very late update for it is let through.
//!
//! The versions live in the dedup cache's table (`Slots`, 28-byte slots), so the guard grows
//! a few slots at a time rather than all at once, and a snapshot reads it in parts. Which
//! entity is least recently touched comes from a queue of touches, oldest first. It used to
//! be a hashbrown map that, at capacity, dropped the oldest tenth in passes over the whole
//! map: at a million entities a growth held the pipeline for 53-59 ms and each pass for
//! 20-23 ms (`stale_pauses`, BENCHMARKS.md session 9), on the Odoo routes, where a late
//! quality hold matters most.

use crate::dedup::{Arrival, Clock, Fifo, Journal, KeyHash, ReadAt, Slots, Value};

/// An entity's newest version and when it was last touched. Packed to 4-byte alignment, so
/// a slot is 28 bytes rather than 32.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    version: i64,
    touched: u32,
}

impl Value for Entry {
    /// Ticks stop below `u32::MAX` (`Clock`), so no stored entry is free.
    const FREE: Entry = Entry {
        version: 0,
        touched: u32::MAX,
    };
    fn is_free(&self) -> bool {
        self.touched == u32::MAX
    }
}

/// Entries of the queue of touches looked at per update, at most: superseded ones are
/// dropped, and at capacity the oldest current one forgets its entity. Bounds the work of
/// one update whatever order the entities were touched in.
const STEP: usize = 64;

/// Touches looked at per update to drop superseded ones from the front of the queue, so
/// that the oldest current touch is near the front when an entity must be forgotten.
const TIDY_STEP: usize = 4;

pub struct StaleGuard {
    capacity: usize,
    table: Slots<Entry>,
    /// One current touch per entity, in the order they happened, and older touches of
    /// entities touched again since (superseded: their tick is not the entity's any more).
    /// An entity touched again within the same 10 ms tick is not queued again.
    touches: Fifo<Arrival>,
    clock: Clock,
    journal: Journal<(KeyHash, i64, u64)>,
}

impl StaleGuard {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        StaleGuard {
            capacity,
            // room for the entities a run of superseded touches lets in above the capacity
            // (`make_room`), without a growth past the table's full size
            table: Slots::new(capacity + headroom(capacity)),
            touches: Fifo::new(),
            clock: Clock::new(),
            journal: Journal::new(),
        }
    }

    /// Starts loading `key`'s home slot into the cache, for a lookup soon (see
    /// `Pipeline::process_batch`).
    pub fn prefetch(&self, key: KeyHash) {
        self.table.prefetch(key.lo());
    }

    /// The newest version seen for `key`, if it is newer than `version` (so the update is stale).
    pub fn newer_than(&self, key: KeyHash, version: i64) -> Option<i64> {
        self.table
            .get(&key)
            .map(|e| e.version)
            .filter(|&newest| newest > version)
    }

    /// Record `version` for `key` if it is the newest.
    pub fn observe(&mut self, key: KeyHash, version: i64, now_ms: u64) {
        let touched = self.clock.ticks(now_ms);
        let touched_ms = self.clock.ms(touched);
        self.journal.push((key, version, touched_ms), self.capacity);
        self.tidy();
        match self.table.get_mut(&key) {
            Some(e) => {
                e.version = e.version.max(version);
                if e.touched == touched {
                    return;
                }
                e.touched = touched;
            }
            None => {
                self.make_room();
                self.table.insert(key, Entry { version, touched });
            }
        }
        self.touches.push_back(Arrival::of(key, touched));
    }

    /// Whether `t` is its entity's current touch.
    fn current(&self, t: Arrival) -> bool {
        self.table
            .get_by_lo(t.lo)
            .is_some_and(|e| e.touched == t.tick)
    }

    /// Drops superseded touches from the front of the queue, a few per update. A current
    /// one there stops it, unless the queue has grown past twice the entities (a long-lived
    /// entity ahead of a hot one's many touches): then it goes to the back, keeping its
    /// tick, so the queue stays bounded at the cost of that entity's place in the order.
    fn tidy(&mut self) {
        if self.touches.len() <= self.table.len() {
            return; // nothing superseded
        }
        for _ in 0..TIDY_STEP {
            let Some(&t) = self.touches.front() else {
                return;
            };
            if self.current(t) {
                if self.touches.len() <= 2 * self.table.len() + STEP {
                    return;
                }
                self.touches.pop_front();
                self.touches.push_back(t);
            } else {
                self.touches.pop_front();
            }
        }
    }

    /// At capacity, forgets the least recently touched entity so that one more fits. It
    /// looks at `STEP` touches at most: past a longer run of superseded ones, the guard
    /// holds one more entity than its capacity for now (up to `headroom`), and the next
    /// updates go on through the run.
    fn make_room(&mut self) {
        let mut budget = STEP;
        while self.table.len() >= self.capacity {
            if budget == 0 && self.table.len() < self.capacity + headroom(self.capacity) {
                return;
            }
            let Some(t) = self.touches.pop_front() else {
                return;
            };
            budget = budget.saturating_sub(1);
            self.table.remove_by_lo(t.lo, |e| e.touched == t.tick);
        }
    }

    /// Every entity's newest version with the Unix millisecond it was last touched, for a
    /// snapshot that survives a restart.
    pub fn export(&self) -> Vec<(KeyHash, i64, u64)> {
        if self.clock.epoch_ms.is_none() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.table.len());
        out.extend(self.table.iter().map(|(k, e)| saved(&self.clock, k, e)));
        out
    }

    /// The next part of a full export read in parts, `slots` table slots at a time (as
    /// `DedupCache::export_part`): true once the table is read. An entity held throughout
    /// is in `out` (a few twice; `import` keeps the newest); one touched meanwhile is in the
    /// next `take_changes`.
    pub fn export_part(
        &mut self,
        at: &mut ReadAt,
        slots: usize,
        out: &mut Vec<(KeyHash, i64, u64)>,
    ) -> bool {
        if self.clock.epoch_ms.is_none() {
            return true;
        }
        let clock = &self.clock;
        self.table
            .read_part(at, slots, out, |k, e| Some(saved(clock, k, e)))
    }

    /// Record observations from now on, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.journal.start();
    }

    /// Observations since the last call, or None when a full `export` is needed.
    pub fn take_changes(&mut self) -> Option<Vec<(KeyHash, i64, u64)>> {
        self.journal.take()
    }

    /// Load a snapshot (newest versions win over what is already known); returns how many
    /// more entities the guard holds. Entities are taken in the order they were last
    /// touched, so they will be forgotten in that order, and beyond the capacity the most
    /// recently touched are kept. (A snapshot read in parts can hold an entity twice.)
    pub fn import(&mut self, entries: &[(KeyHash, i64, u64)]) -> usize {
        let before = self.len();
        let mut by_touch = entries.to_vec();
        by_touch.sort_by_key(|e| e.2);
        if self.clock.epoch_ms.is_none() {
            self.clock.epoch_ms = by_touch.first().map(|e| e.2);
        }
        for &(key, version, touched_ms) in &by_touch {
            self.observe(key, version, touched_ms);
        }
        self.len().saturating_sub(before)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Bytes allocated for entities: the table and the queue of touches.
    pub fn memory_bytes(&self) -> usize {
        self.table.allocation_size() + self.touches.allocation_size()
    }
}

/// What a snapshot holds of an entity: its newest version and the Unix millisecond it was
/// last touched.
fn saved(clock: &Clock, key: KeyHash, e: Entry) -> (KeyHash, i64, u64) {
    (key, e.version, clock.ms(e.touched))
}

/// Entities the guard may hold above its capacity while `make_room` works through a run of
/// superseded touches: a fiftieth (a run drains at `STEP` touches per update, so it would
/// take a run of over 60 times this to use it all up).
fn headroom(capacity: usize) -> usize {
    capacity / 50 + STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_are_stale_equal_and_newer_are_not() {
        let mut g = StaleGuard::new(10);
        let k = KeyHash::of("stock.move:7");
        assert_eq!(g.newer_than(k, 100), None);
        g.observe(k, 100, 0);
        assert_eq!(g.newer_than(k, 99), Some(100));
        assert_eq!(g.newer_than(k, 100), None);
        assert_eq!(g.newer_than(k, 101), None);
        g.observe(k, 101, 1);
        g.observe(k, 50, 2); // an out-of-order observation never lowers the newest version
        assert_eq!(g.newer_than(k, 100), Some(101));
    }

    #[test]
    fn a_snapshot_restores_newest_versions() {
        let mut g = StaleGuard::new(10);
        let k = KeyHash::of("stock.move:7");
        g.observe(k, 100, 5_000);
        let mut h = StaleGuard::new(10);
        assert_eq!(h.import(&g.export()), 1);
        assert_eq!(h.newer_than(k, 99), Some(100));
    }

    #[test]
    fn at_capacity_the_least_recently_touched_entity_is_forgotten() {
        let mut g = StaleGuard::new(3);
        let k = |i: i64| KeyHash::of(&format!("stock.move:{i}"));
        g.observe(k(1), 1, 0);
        g.observe(k(2), 1, 100);
        g.observe(k(3), 1, 200);
        g.observe(k(1), 2, 300); // 1 touched again: 2 is now the least recently touched
        g.observe(k(4), 1, 400);
        assert_eq!(g.len(), 3);
        assert_eq!(g.newer_than(k(2), 0), None, "2 forgotten");
        assert_eq!(g.newer_than(k(1), 0), Some(2));
        g.observe(k(5), 1, 500);
        assert_eq!(g.newer_than(k(3), 0), None, "then 3");
        assert_eq!(g.newer_than(k(1), 0), Some(2));
        assert_eq!(g.newer_than(k(4), 0), Some(1));
    }

    #[test]
    fn one_entity_touched_over_and_over_does_not_grow_the_guard() {
        let mut g = StaleGuard::new(1_000);
        for i in 0..500i64 {
            g.observe(KeyHash::of(&format!("cold:{i}")), 1, 0);
        }
        let hot = KeyHash::of("hot");
        let before = g.memory_bytes();
        // a new tick every time: each touch supersedes the last, behind 500 current ones
        for i in 0..200_000i64 {
            g.observe(hot, i, i as u64 * 10);
        }
        assert_eq!(g.newer_than(hot, 0), Some(199_999));
        assert_eq!(g.len(), 501);
        assert!(
            g.touches.len() <= 2 * g.len() + 2 * STEP,
            "{}",
            g.touches.len()
        );
        assert!(
            g.memory_bytes() <= before + 2 * 4096 * 12,
            "{}",
            g.memory_bytes()
        );
        // the cold entities are all still known
        assert!((0..500).all(|i| g.newer_than(KeyHash::of(&format!("cold:{i}")), 0).is_some()));
    }

    #[test]
    fn a_long_run_of_superseded_touches_is_worked_through_a_step_at_a_time() {
        let cap = 10_000;
        let mut g = StaleGuard::new(cap);
        let k = |i: usize| KeyHash::of(&format!("e{i}"));
        for i in 0..cap {
            g.observe(k(i), 1, 0);
        }
        // every entity but the first touched again: the queue's front is one current
        // touch, then a run of superseded ones as long as the capacity
        for i in 1..cap {
            g.observe(k(i), 2, 10);
        }
        let most = (0..cap)
            .map(|i| {
                g.observe(k(cap + i), 1, 20);
                g.len()
            })
            .max();
        // no update worked through the whole run at once: the guard held a few more than
        // its capacity meanwhile, within the headroom, and is back at its capacity
        assert!(
            most > Some(cap) && most <= Some(cap + headroom(cap)),
            "{most:?}"
        );
        assert_eq!(g.len(), cap);
        assert_eq!(
            g.newer_than(k(0), 0),
            None,
            "the least recently touched went first"
        );
        assert_eq!(g.newer_than(k(2 * cap - 1), 0), Some(1));
    }

    #[test]
    fn an_export_in_parts_reads_every_entity_while_the_guard_grows() {
        let mut g = StaleGuard::new(100_000);
        let k = |i: i64| KeyHash::of(&format!("e{i}"));
        for i in 0..1_000 {
            g.observe(k(i), i, 1_000);
        }
        let mut at = ReadAt::default();
        let mut out = Vec::new();
        let mut next = 1_000;
        // updates between the parts grow the table (and move its entries) meanwhile; the
        // read starts over after each growth
        let mut grew = false;
        while !g.export_part(&mut at, 64, &mut out) {
            grew |= g.table.growing();
            for _ in 0..10 {
                g.observe(k(next), next, 2_000);
                next += 1;
            }
        }
        assert!(grew);
        let mut h = StaleGuard::new(100_000);
        h.import(&out);
        assert!((0..1_000).all(|i| h.newer_than(k(i), i - 1) == Some(i)));
    }

    #[test]
    fn an_import_beyond_the_capacity_keeps_the_most_recently_touched() {
        let mut g = StaleGuard::new(100);
        let k = |i: i64| KeyHash::of(&format!("e{i}"));
        let entries: Vec<_> = (0..300)
            .rev()
            .map(|i| (k(i), i, 1_000 + i as u64))
            .collect();
        assert_eq!(g.import(&entries), 100);
        assert_eq!(g.len(), 100);
        assert_eq!(g.newer_than(k(299), 0), Some(299));
        assert_eq!(g.newer_than(k(199), 0), None);
    }

    #[test]
    fn a_slot_is_28_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 12);
    }

    #[test]
    fn bounded_by_capacity() {
        let mut g = StaleGuard::new(100);
        for i in 0..1_000i64 {
            g.observe(KeyHash::of(&i.to_string()), i, (i as u64) * 10);
        }
        assert!(g.len() <= 100);
        assert_eq!(g.newer_than(KeyHash::of("999"), 0), Some(999));
    }
}
