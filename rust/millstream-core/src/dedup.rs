//! Dedup stage: "was this key seen within the window?" in bounded memory.
//!
//! Each remembered key is a 128-bit xxh3 hash of the rendered key (decision 6), stored with a
//! 32-bit timestamp in 10 ms ticks: a 20-byte slot in the cache's own table (`slots`, at most
//! 70% full), plus a 12-byte entry in a queue of arrivals: 40.6 bytes a key when the cache is
//! full, up to about 56 while it fills outside a growth (`memory_bytes` reports the real
//! allocation). The queue grows a block at a time (`fifo.rs`), never copied whole. Keys
//! leave from the front of the queue, one at a time: when their window has passed, or, at
//! capacity, the oldest for each new one.

use xxhash_rust::xxh3::xxh3_128;

mod fifo;
mod slots;
pub(crate) use fifo::Fifo;
pub use slots::ReadAt;
pub(crate) use slots::{Slots, Value};

/// A 128-bit key hash. Bytes rather than `u128` so the slot packs into 20 bytes (u128 would
/// force 16-byte alignment and a 32-byte slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 16]);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(xxh3_128(key.as_bytes()).to_le_bytes())
    }
    pub fn as_u128(self) -> u128 {
        u128::from_le_bytes(self.0)
    }
    /// The low half, all that the table hashes on.
    pub(crate) fn lo(self) -> [u8; 8] {
        let mut lo = [0u8; 8];
        lo.copy_from_slice(&self.0[..8]);
        lo
    }
}

const TICK_MS: u64 = 10;
/// The top bit of a slot's tick marks a reserved (not yet committed) key; the other 31 bits
/// are the time, enough for 248 days of 10 ms ticks.
const PENDING: u32 = 1 << 31;
const TICKS: u32 = PENDING - 1;

/// What a snapshot holds of a remembered key: its Unix millisecond, if it is committed
/// (reserved keys are left out).
fn committed(clock: &Clock, key: KeyHash, seen: u32) -> Option<(KeyHash, u64)> {
    (seen & PENDING == 0).then(|| (key, clock.ms(seen)))
}
/// Where the clock stops: one below `TICKS`, so a stored tick with its flag never equals the
/// dedup table's free-slot marker (`slots::EMPTY`).
const MAX_TICK: u32 = TICKS - 1;

/// Time in 10 ms ticks since the cache's epoch (its first use), saturating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub(crate) epoch_ms: Option<u64>,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock { epoch_ms: None }
    }
    /// The Unix millisecond a tick stands for (what snapshots store).
    pub(crate) fn ms(&self, tick: u32) -> u64 {
        self.epoch_ms.unwrap_or(0) + u64::from(tick & TICKS) * TICK_MS
    }
    pub(crate) fn ticks(&mut self, now_ms: u64) -> u32 {
        let epoch = *self.epoch_ms.get_or_insert(now_ms);
        let t = now_ms.saturating_sub(epoch) / TICK_MS;
        u32::try_from(t).unwrap_or(MAX_TICK).min(MAX_TICK)
    }
}

/// Keys seen within a time window, bounded in count.
pub struct DedupCache {
    window_ticks: u32,
    capacity: usize,
    table: Slots<u32>,
    /// The keys in the order they were remembered, oldest first. Expiry and eviction take
    /// keys off its front one at a time. They used to be passes over the whole table (a
    /// sweep once per window, and at capacity three passes to drop the oldest tenth), which
    /// held the pipeline for 25-37 ms at two million keys: a pause every 200,000 new keys.
    arrivals: Fifo<Arrival>,
    clock: Clock,
    journal: Journal<(KeyHash, u64)>,
}

/// How many evictions ahead the leaving key's slot is prefetched: enough for the load to
/// land before it is needed (each eviction is a few hundred ns apart in a batch).
const PREFETCH_AHEAD: usize = 8;

/// A key's place in `arrivals` (and an entity's in the stale guard's queue of touches): the
/// low half of its hash, which is all the table hashes on, and the tick it was remembered
/// at, so an entry whose key has since been forgotten or remembered again is recognised as
/// stale. 12 bytes rather than the whole 20-byte key and value: with the table's 20 bytes at
/// most 70% full, a full cache costs 40.6 bytes a key.
#[derive(Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) lo: [u8; 8],
    pub(crate) tick: u32,
}

impl Arrival {
    pub(crate) fn of(key: KeyHash, tick: u32) -> Arrival {
        Arrival { lo: key.lo(), tick }
    }
}

/// Entries committed since the last snapshot, so a snapshot can write only what changed
/// (a full table of a million keys is 24 MB; a few seconds of new keys is a small fraction).
/// Off unless the data plane saves state; bounded by the table's capacity, beyond which it
/// gives up and the next snapshot is a full one.
///
/// Entries are kept in the form a snapshot writes (times in Unix milliseconds), so taking
/// them is a swap: a save takes them under the pipeline's lock, and converting a few hundred
/// thousand entries there held every event back for milliseconds, in proportion to the
/// keys (BENCHMARKS.md, session 6).
pub(crate) struct Journal<T> {
    on: bool,
    lost: bool,
    entries: Vec<T>,
}

impl<T> Journal<T> {
    pub(crate) fn new() -> Self {
        Journal {
            on: false,
            lost: false,
            entries: Vec::new(),
        }
    }
    pub(crate) fn start(&mut self) {
        self.on = true;
        self.lost = true; // nothing saved yet: the first snapshot is a full one
        self.entries.clear();
    }
    pub(crate) fn push(&mut self, entry: T, capacity: usize) {
        if !self.on || self.lost {
            return;
        }
        if self.entries.len() >= capacity {
            self.lost = true;
            self.entries = Vec::new();
            return;
        }
        self.entries.push(entry);
    }
    /// What changed since the last call, or None when only a full snapshot will do.
    pub(crate) fn take(&mut self) -> Option<Vec<T>> {
        let lost = std::mem::take(&mut self.lost);
        // The next interval's changes are about as many as this one's: sized for them, the
        // pushes do not copy the vector over and over as it doubles.
        let size = self.entries.len();
        let entries = std::mem::replace(&mut self.entries, Vec::with_capacity(size));
        (!lost).then_some(entries)
    }
}

impl DedupCache {
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        let window_ticks = u32::try_from(window_ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX);
        DedupCache {
            window_ticks: window_ticks.max(1),
            capacity: capacity.max(1),
            table: Slots::new(capacity.max(1)),
            arrivals: Fifo::new(),
            clock: Clock::new(),
            journal: Journal::new(),
        }
    }

    /// Record committed keys from now on, for `take_changes` (the data plane's snapshots).
    pub fn track_changes(&mut self) {
        self.journal.start();
    }

    /// Keys committed since the last call (with the Unix millisecond they were seen), or
    /// None when a full `export` is needed (first snapshot, or too many changes).
    pub fn take_changes(&mut self) -> Option<Vec<(KeyHash, u64)>> {
        self.journal.take()
    }

    fn journal(&mut self, key: KeyHash, tick: u32) {
        let ms = self.clock.ms(tick);
        self.journal.push((key, ms), self.capacity);
    }

    fn expired(&self, seen: u32, now: u32) -> bool {
        now.saturating_sub(seen & TICKS) >= self.window_ticks
    }

    /// True if `key` was remembered (or is reserved) within the window before `now_ms`.
    pub fn is_duplicate(&mut self, key: KeyHash, now_ms: u64) -> bool {
        let now = self.clock.ticks(now_ms);
        match self.table.get(&key) {
            Some(seen) => !self.expired(seen, now),
            None => false,
        }
    }

    /// Remember `key` as seen at `now_ms` (committed: a best-effort output was handed over).
    pub fn remember(&mut self, key: KeyHash, now_ms: u64) {
        let t = self.insert(key, now_ms, 0);
        self.journal(key, t);
    }

    /// Hold `key` while an at-least-once output is in flight: later copies count as
    /// duplicates (the first copy is either confirmed or released and redelivered), but a
    /// snapshot leaves it out, so a crash before the PubAck cannot turn the redelivery
    /// into a "duplicate" that is acked without an output (decision 6).
    pub fn reserve(&mut self, key: KeyHash, now_ms: u64) {
        self.insert(key, now_ms, PENDING);
    }

    /// The output of a reserved key was acknowledged: it is committed.
    pub fn confirm(&mut self, key: KeyHash) {
        if let Some(seen) = self.table.get_mut(&key) {
            *seen &= TICKS;
            let t = *seen;
            self.journal(key, t);
        }
    }

    /// Starts loading `key`'s home slot into the cache, for a lookup soon (see
    /// `Pipeline::process_batch`).
    pub fn prefetch(&self, key: KeyHash) {
        self.table.prefetch(key.lo());
    }

    /// `is_duplicate`, and when it is not, `remember` (or `reserve`), in one probe of the
    /// table: at a full two-million-key table each probe is a cache miss, and the separate
    /// calls made up to three. Returns false for a duplicate.
    pub fn admit(&mut self, key: KeyHash, now_ms: u64, reserve: bool) -> bool {
        let now = self.clock.ticks(now_ms);
        self.expire(now);
        let flag = if reserve { PENDING } else { 0 };
        if !self.place(key, now, flag, self.window_ticks) {
            return false;
        }
        if !reserve {
            self.journal(key, now);
        }
        true
    }

    /// Forget the keys whose window has passed, oldest first.
    fn expire(&mut self, now: u32) {
        while let Some(a) = self.arrivals.front() {
            if now.saturating_sub(a.tick) < self.window_ticks {
                break;
            }
            self.leave();
        }
    }

    /// At capacity, the oldest key leaves, so that one more fits.
    fn make_room(&mut self) {
        while self.arrivals.len() >= self.capacity {
            self.leave();
        }
    }

    /// Queue `key`, remembered at `now`.
    fn arrived(&mut self, key: KeyHash, now: u32) {
        // At most one arrival per key is current, so the queue holds at most `capacity`
        // once stale ones are dropped; `make_room` ran before the key went in.
        self.make_room();
        self.arrivals.push_back(Arrival::of(key, now));
    }

    /// Take the oldest arrival off the queue and forget its key, unless the key has been
    /// forgotten or remembered again since (then the entry is stale and only dropped).
    fn leave(&mut self) {
        if let Some(a) = self.arrivals.pop_front() {
            self.table.remove_by_lo(a.lo, |seen| seen & TICKS == a.tick);
        }
        if let Some(soon) = self.arrivals.get(PREFETCH_AHEAD) {
            self.table.prefetch(soon.lo);
        }
    }

    fn insert(&mut self, key: KeyHash, now_ms: u64, flag: u32) -> u32 {
        let now = self.clock.ticks(now_ms);
        self.expire(now);
        self.insert_at(key, now, flag);
        now
    }

    fn insert_at(&mut self, key: KeyHash, tick: u32, flag: u32) {
        self.place(key, tick, flag, 0);
    }

    /// Remember `key` at `tick` with `flag` and queue its arrival, in one probe of the table.
    /// A key already remembered less than `unless_within` ticks before is left as it is and
    /// false returned: a duplicate (`admit`).
    fn place(&mut self, key: KeyHash, tick: u32, flag: u32, unless_within: u32) -> bool {
        match self.table.get_mut(&key) {
            Some(seen) if tick.saturating_sub(*seen & TICKS) < unless_within => return false,
            // Remembered again within the same tick: its arrival is queued already.
            Some(seen) if *seen & TICKS == tick => {
                *seen = tick | flag;
                return true;
            }
            // Remembered again later (for `admit`: its window has passed, or the clock went
            // back): a new arrival; the old one is now stale.
            Some(seen) => *seen = tick | flag,
            None => {
                self.make_room();
                self.table.insert(key, tick | flag);
            }
        }
        self.arrived(key, tick);
        true
    }

    /// Forget `key`, e.g. when its output failed.
    pub fn forget(&mut self, key: KeyHash) {
        self.table.remove(&key);
    }

    /// Committed keys with the Unix millisecond they were seen at (reserved ones are left
    /// out), for a snapshot that survives a restart.
    pub fn export(&self) -> Vec<(KeyHash, u64)> {
        if self.clock.epoch_ms.is_none() {
            return Vec::new();
        }
        // sized up front: a full table is tens of megabytes, and doubling into it copies
        // them again several times while the pipeline waits
        let mut out = Vec::with_capacity(self.table.len());
        out.extend(
            self.table
                .iter()
                .filter_map(|(k, seen)| committed(&self.clock, k, seen)),
        );
        out
    }

    /// The next part of a full export read in parts, `slots` table slots at a time, so that
    /// a snapshot of millions of keys does not hold the pipeline for the whole read: adds
    /// committed keys to `out` and returns true once the table is read. Between parts the
    /// cache may change. A key held throughout is in `out` (a few twice: `import` takes
    /// them as one); a key remembered or confirmed meanwhile is in the next `take_changes`
    /// (take them when the export starts); a key that left meanwhile may or may not be.
    pub fn export_part(
        &mut self,
        at: &mut ReadAt,
        slots: usize,
        out: &mut Vec<(KeyHash, u64)>,
    ) -> bool {
        if self.clock.epoch_ms.is_none() {
            return true;
        }
        let clock = &self.clock;
        self.table
            .read_part(at, slots, out, |k, seen| committed(clock, k, seen))
    }

    /// Load keys from a snapshot; ones already outside the window at `now_ms` are skipped,
    /// and beyond the capacity the newest are kept. Each keeps its original time, so its
    /// window ends when it would have without a restart.
    pub fn import(&mut self, keys: &[(KeyHash, u64)], now_ms: u64) -> usize {
        let window_ms = u64::from(self.window_ticks) * TICK_MS;
        let mut live: Vec<(KeyHash, u64)> = keys
            .iter()
            .filter(|(_, seen)| *seen <= now_ms && seen + window_ms > now_ms)
            .copied()
            .collect();
        // Queued in the order they were seen, so they also leave in that order.
        live.sort_by_key(|&(_, seen)| seen);
        let live = &live[live.len().saturating_sub(self.capacity)..];
        if self.clock.epoch_ms.is_none() {
            self.clock.epoch_ms = live.first().map(|&(_, seen)| seen);
        }
        for &(key, seen_ms) in live {
            let t = self.clock.ticks(seen_ms);
            self.insert_at(key, t, 0);
        }
        live.len()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// Bytes the cache has allocated for remembered keys: the table and the arrival queue.
    pub fn memory_bytes(&self) -> usize {
        self.table.allocation_size() + self.arrivals.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_within_window_only() {
        let mut c = DedupCache::new(1_000, 100);
        let k = KeyHash::of("order-1");
        let t0 = 1_700_000_000_000;
        assert!(!c.is_duplicate(k, t0));
        c.remember(k, t0);
        assert!(c.is_duplicate(k, t0 + 999));
        assert!(!c.is_duplicate(k, t0 + 1_000));
        assert!(!c.is_duplicate(KeyHash::of("order-2"), t0 + 10));
    }

    #[test]
    fn admit_is_check_then_remember() {
        let mut c = DedupCache::new(1_000, 3);
        c.track_changes();
        let _ = c.take_changes();
        let t0 = 1_700_000_000_000;
        let k = KeyHash::of("order-1");
        assert!(c.admit(k, t0, false));
        assert!(!c.admit(k, t0 + 999, false), "within the window");
        assert!(c.admit(k, t0 + 1_000, false), "the window has passed");
        assert!(c.admit(KeyHash::of("held"), t0 + 1_000, true));
        assert!(
            !c.admit(KeyHash::of("held"), t0 + 1_001, false),
            "reserved counts"
        );
        // only committed keys are journalled for snapshots
        let changed: Vec<KeyHash> = c
            .take_changes()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(changed, vec![k, k]);
        // at capacity the oldest go, as with remember
        for i in 0..5 {
            assert!(c.admit(KeyHash::of(&format!("n{i}")), t0 + 1_100 + i, false));
        }
        assert!(c.len() <= 3);
        assert!(!c.admit(KeyHash::of("n4"), t0 + 1_200, false));
    }

    #[test]
    fn forget_releases_a_key() {
        let mut c = DedupCache::new(60_000, 100);
        let k = KeyHash::of("x");
        c.remember(k, 0);
        c.forget(k);
        assert!(!c.is_duplicate(k, 1));
    }

    #[test]
    fn capacity_bounds_memory_and_evicts_oldest() {
        let mut c = DedupCache::new(3_600_000, 1_000);
        for i in 0..5_000u64 {
            c.remember(KeyHash::of(&format!("k{i}")), i * 20);
        }
        assert!(c.len() <= 1_000);
        // the newest keys survive, the oldest are gone
        assert!(c.is_duplicate(KeyHash::of("k4999"), 100_000));
        assert!(!c.is_duplicate(KeyHash::of("k0"), 100_000));
    }

    #[test]
    fn at_most_64_bytes_per_key_at_capacity() {
        // Full, then turned over twice (a key leaves for each new one). 1,500 and 7,000 are
        // where a SwissTable under that churn doubled its memory; 65,537 and 917,505 are just
        // past a power of two.
        for cap in [100usize, 1_500, 7_000, 65_537, 917_505] {
            let mut c = DedupCache::new(3_600_000, cap);
            let turns = if cap > 100_000 { 1 } else { 3 };
            for i in 0..(cap * turns) as u64 {
                c.remember(KeyHash::of(&i.to_string()), i / 100);
            }
            assert_eq!(c.len(), cap);
            let per_key = c.memory_bytes() as f64 / c.len() as f64;
            assert!(
                per_key <= 64.0,
                "capacity {cap}: {per_key:.1} bytes per key"
            );
        }
    }

    #[test]
    fn at_most_64_bytes_per_key_while_filling() {
        let mut c = DedupCache::new(3_600_000, 200_000);
        for i in 0..200_000u64 {
            c.remember(KeyHash::of(&i.to_string()), 0);
            if c.len() >= 1_000 && i % 97 == 0 {
                let per_key = c.memory_bytes() as f64 / c.len() as f64;
                // while a growth is under way (the next table written ahead, then the
                // entries moving over) both tables are held, as they were for a moment
                // when a growth was done at once
                let bound = if c.table.growing() { 110.0 } else { 64.0 };
                assert!(
                    per_key <= bound,
                    "{} keys: {per_key:.1} bytes per key",
                    c.len()
                );
            }
        }
    }

    #[test]
    fn at_capacity_exactly_the_oldest_key_leaves() {
        let mut c = DedupCache::new(3_600_000, 20);
        let k = |i: u64| KeyHash::of(&format!("k{i}"));
        for i in 0..20 {
            assert!(c.admit(k(i), 1_000 + i * 10, false));
        }
        assert!(c.admit(k(20), 1_200, false));
        // one key made room, not a tenth of the table
        assert_eq!(c.len(), 20);
        assert!(!c.is_duplicate(k(0), 1_210), "the oldest left");
        for i in 1..21 {
            assert!(c.is_duplicate(k(i), 1_210), "k{i} stays");
        }
    }

    #[test]
    fn a_key_forgotten_and_remembered_again_keeps_its_new_place() {
        let mut c = DedupCache::new(3_600_000, 3);
        let (a, b, x, y) = (
            KeyHash::of("a"),
            KeyHash::of("b"),
            KeyHash::of("x"),
            KeyHash::of("y"),
        );
        c.reserve(a, 1_000);
        c.forget(a); // its output failed
        c.remember(b, 1_010);
        c.reserve(a, 1_020); // the redelivery
        c.remember(x, 1_030);
        // a's first arrival is stale: taking it off the queue must not forget the
        // redelivered a; b is the oldest key now
        c.remember(y, 1_040);
        assert!(c.is_duplicate(a, 1_050));
        assert!(!c.is_duplicate(b, 1_050));
        assert!(c.is_duplicate(x, 1_050) && c.is_duplicate(y, 1_050));
    }

    #[test]
    fn expired_keys_leave_without_a_sweep() {
        let mut c = DedupCache::new(1_000, 100);
        for i in 0..50u64 {
            c.remember(KeyHash::of(&i.to_string()), 10_000 + i);
        }
        assert_eq!(c.len(), 50);
        // the next key, 1.02 s later: all 50 are past their window
        assert!(c.admit(KeyHash::of("late"), 11_060, false));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn import_keeps_the_newest_when_over_capacity() {
        let mut c = DedupCache::new(60_000, 3);
        let keys: Vec<(KeyHash, u64)> = (0..5u64)
            .rev()
            .map(|i| (KeyHash::of(&i.to_string()), 1_000_000 + i * 1_000))
            .collect();
        assert_eq!(c.import(&keys, 1_010_000), 3);
        for i in 0..5u64 {
            assert_eq!(
                c.is_duplicate(KeyHash::of(&i.to_string()), 1_010_000),
                i >= 2,
                "key {i}"
            );
        }
        // and they leave oldest first
        c.remember(KeyHash::of("new"), 1_010_000);
        assert!(!c.is_duplicate(KeyHash::of("2"), 1_010_000));
        assert!(c.is_duplicate(KeyHash::of("3"), 1_010_000));
    }

    #[test]
    fn reserved_keys_are_duplicates_but_not_snapshotted_until_confirmed() {
        let mut c = DedupCache::new(60_000, 100);
        let (a, b) = (KeyHash::of("a"), KeyHash::of("b"));
        c.reserve(a, 1_000);
        c.remember(b, 1_000);
        assert!(c.is_duplicate(a, 1_010));
        assert_eq!(c.export(), vec![(b, 1_000)]);
        c.confirm(a);
        let mut keys = c.export();
        keys.sort_by_key(|(k, _)| k.as_u128());
        assert_eq!(keys.len(), 2);
        c.reserve(KeyHash::of("c"), 2_000);
        c.forget(KeyHash::of("c"));
        assert!(!c.is_duplicate(KeyHash::of("c"), 2_010));
    }

    /// A snapshot read in parts while events keep coming: together with the changes taken
    /// when it started and after it ended, a restore holds every key the cache holds.
    #[test]
    fn an_export_in_parts_and_the_changes_since_restore_the_cache() {
        let mut c = DedupCache::new(3_600_000, 50_000);
        c.track_changes();
        let k = |n: u64| KeyHash::of(&format!("k{n}"));
        for n in 0..50_000 {
            assert!(c.admit(k(n), 1_000 + n / 10, n % 7 == 0));
        }
        assert_eq!(c.take_changes(), None, "the first save is a whole one");
        let (mut at, mut out, mut n) = (ReadAt::default(), Vec::new(), 50_000);
        while !c.export_part(&mut at, 256, &mut out) {
            // at capacity: each new key pushes the oldest out, shifting entries back
            for _ in 0..100 {
                assert!(c.admit(k(n), 10_000 + n / 10, false));
                n += 1;
            }
        }
        let changes = c.take_changes().expect("changes since the export began");
        let mut restored = DedupCache::new(3_600_000, 50_000);
        restored.import(&out, 20_000);
        restored.import(&changes, 20_000);
        let now = 20_000;
        let held: Vec<_> = c.table.iter().filter(|&(_, v)| v & PENDING == 0).collect();
        assert!(held.len() > 40_000);
        for (key, _) in held {
            assert!(restored.is_duplicate(key, now), "a held key was not saved");
        }
        let saved: std::collections::HashSet<u128> =
            out.iter().map(|(key, _)| key.as_u128()).collect();
        for n in (0..50_000).filter(|n| n % 7 == 0) {
            assert!(
                !saved.contains(&k(n).as_u128()),
                "reserved keys stay out of snapshots"
            );
        }
    }

    #[test]
    fn import_restores_the_window_from_the_original_time() {
        let mut c = DedupCache::new(60_000, 100);
        let (a, b) = (KeyHash::of("a"), KeyHash::of("b"));
        c.remember(a, 1_000_000);
        c.remember(b, 1_050_000);
        let snap = c.export();
        let mut d = DedupCache::new(60_000, 100);
        // restarted 20 s after b was seen: a (70 s old) is past the window, b is not
        assert_eq!(d.import(&snap, 1_070_000), 1);
        assert!(d.is_duplicate(b, 1_070_000));
        assert!(!d.is_duplicate(a, 1_070_000));
        // b's window still ends 60 s after it was first seen
        assert!(!d.is_duplicate(b, 1_110_000));
    }

    #[test]
    fn changes_since_the_last_snapshot_only_committed_keys() {
        let mut c = DedupCache::new(60_000, 4);
        let (a, b, r) = (KeyHash::of("a"), KeyHash::of("b"), KeyHash::of("r"));
        c.remember(a, 1_000);
        c.track_changes();
        assert_eq!(
            c.take_changes(),
            None,
            "the first snapshot after tracking starts is full"
        );
        c.remember(b, 2_000);
        c.reserve(r, 2_000);
        assert_eq!(c.take_changes(), Some(vec![(b, 2_000)]));
        c.confirm(r);
        assert_eq!(c.take_changes(), Some(vec![(r, 2_000)]));
        assert_eq!(c.take_changes(), Some(vec![]));
        for i in 0..10 {
            c.remember(KeyHash::of(&i.to_string()), 3_000);
        }
        assert_eq!(
            c.take_changes(),
            None,
            "more changes than capacity: take a full one"
        );
    }

    #[test]
    fn slot_is_twenty_bytes() {
        assert_eq!(std::mem::size_of::<(KeyHash, u32)>(), 20);
    }
}
