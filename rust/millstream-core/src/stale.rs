//! Stale-update guard: per entity key, drop an update whose version is older than the
//! newest one seen (Odoo's `write_date` is the natural version; two writes close together can
//! arrive out of order). Bounded: at capacity the least recently touched tenth is forgotten,
//! after which a very late update for those entities is let through.

use crate::dedup::{evict_oldest, Clock, HashTable, Journal, KeyHash, PassThrough};

#[derive(Clone, Copy)]
struct Entry {
    version: i64,
    touched: u32,
}

pub struct StaleGuard {
    capacity: usize,
    table: HashTable<Entry>,
    clock: Clock,
    journal: Journal<(KeyHash, i64, u64)>,
}

impl StaleGuard {
    pub fn new(capacity: usize) -> Self {
        StaleGuard {
            capacity: capacity.max(1),
            table: HashTable::with_hasher(PassThrough),
            clock: Clock::new(),
            journal: Journal::new(),
        }
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
        if let Some(e) = self.table.get_mut(&key) {
            e.version = e.version.max(version);
            e.touched = touched;
            return;
        }
        if self.table.len() >= self.capacity {
            evict_oldest(&mut self.table, |e| e.touched);
        }
        self.table.insert(key, Entry { version, touched });
    }

    /// Every entity's newest version with the Unix millisecond it was last touched, for a
    /// snapshot that survives a restart.
    pub fn export(&self) -> Vec<(KeyHash, i64, u64)> {
        if self.clock.epoch_ms.is_none() {
            return Vec::new();
        }
        self.table
            .iter()
            .map(|(k, e)| (*k, e.version, self.clock.ms(e.touched)))
            .collect()
    }

    /// Record observations from now on, for `take_changes`.
    pub fn track_changes(&mut self) {
        self.journal.start();
    }

    /// Observations since the last call, or None when a full `export` is needed.
    pub fn take_changes(&mut self) -> Option<Vec<(KeyHash, i64, u64)>> {
        self.journal.take()
    }

    /// Load a snapshot (newest versions win over what is already known).
    pub fn import(&mut self, entries: &[(KeyHash, i64, u64)]) -> usize {
        if self.clock.epoch_ms.is_none() {
            self.clock.epoch_ms = entries.iter().map(|e| e.2).min();
        }
        let mut loaded = 0;
        for &(key, version, touched_ms) in entries {
            if self.table.len() >= self.capacity && !self.table.contains_key(&key) {
                break;
            }
            self.observe(key, version, touched_ms);
            loaded += 1;
        }
        loaded
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.table.allocation_size()
    }
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
    fn bounded_by_capacity() {
        let mut g = StaleGuard::new(100);
        for i in 0..1_000i64 {
            g.observe(KeyHash::of(&i.to_string()), i, (i as u64) * 10);
        }
        assert!(g.len() <= 100);
        assert_eq!(g.newer_than(KeyHash::of("999"), 0), Some(999));
    }
}
