//! The dedup cache's and the stale guard's table: 128-bit key hashes with a small value (a
//! 32-bit tick; a version and a tick), open addressing with linear probing and backward-shift
//! deletion.
//!
//! Written by hand on purpose. A full dedup cache removes one key for every key it adds.
//! hashbrown (a SwissTable) marks a removed slot as a tombstone when its probe group is full;
//! once tombstones have used up the spare slots, an insert doubles the table if it is more
//! than half full, or else rehashes it in place. Under that steady churn a cache of 1,500
//! keys settled at twice its memory (measured), and one of two million keys would pause for a
//! rehash. Here a removal shifts the entries after it back instead, so there are no tombstones:
//! the table's size follows the capacity alone (grown by doubling while it fills, never past
//! `capacity / MAX_LOAD`). No maintained crate offers a table with that property.
//!
//! Growth is spread over inserts. The next table is written ahead, a few slots at every
//! insert from 6 in 10 used, and after the growth the old table's entries move over a few
//! slots at every insert while lookups read both tables. Done at once, a growth held the
//! pipeline for 64 ms at 1.6 million keys on an idle machine and longer under load (much of
//! it the kernel zeroing the new table's pages): a pause at every growth while a fresh
//! router's telemetry table filled (the p99 at 80% of saturation, BENCHMARKS.md session 9).

use super::KeyHash;

/// A free slot's value. The dedup cache's values are ticks with a flag bit, which never
/// reach it.
pub(crate) const EMPTY: u32 = u32::MAX;

/// What a slot holds beside its key, with one value set aside to mark a free slot (so a
/// slot needs no separate flag, and stays 20 bytes for the dedup cache's `u32`).
pub(crate) trait Value: Copy {
    const FREE: Self;
    fn is_free(&self) -> bool;
}

impl Value for u32 {
    const FREE: u32 = EMPTY;
    fn is_free(&self) -> bool {
        *self == EMPTY
    }
}

/// At most 7 slots in 10 are used: with linear probing, a lookup of an absent key (the
/// common case: a new event) reads about 6 slots on average at this load, 20 bytes each,
/// in one or two cache lines.
const MAX_LOAD: (usize, usize) = (7, 10);

/// Old slots moved over per insert while a growth is under way. A growth by half leaves
/// 0.35 old sizes of inserts before the next one, and the move needs 1/MOVE_STEP of an old
/// size: it is always done in time, at about five moved entries per insert.
const MOVE_STEP: usize = 8;

/// From this load the next table is written ahead, `PREPARE_STEP` slots per insert: the
/// 1.5 sizes it needs are written by 6.5 in 10 used, before the growth at 7.
const PREPARE_AT: (usize, usize) = (6, 10);
const PREPARE_STEP: usize = 32;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot<V> {
    key: [u8; 16],
    val: V,
}

impl<V: Value> Slot<V> {
    const FREE: Slot<V> = Slot {
        key: [0; 16],
        val: V::FREE,
    };
    fn is_free(&self) -> bool {
        self.val.is_free()
    }
}

pub(crate) struct Slots<V> {
    slots: Vec<Slot<V>>,
    /// The next table, written ahead of the growth (empty until the load reaches
    /// `PREPARE_AT`, and at full size).
    spare: Vec<Slot<V>>,
    /// The table before the last growth, while its entries move into `slots` (empty once
    /// they have). A key is in one of the two, never both.
    old: Vec<Slot<V>>,
    /// The move goes round `old` from the free slot `start` back to it, a whole cluster at
    /// a time: clusters end at free slots, so freeing a whole one leaves every other
    /// probe in `old` as it was. `next` is where it has got to.
    start: usize,
    next: usize,
    len: usize,
    /// The size that holds `capacity` keys within `MAX_LOAD`.
    full: usize,
    /// The furthest from its home slot any insert has placed an entry since the last
    /// growth. Entries only ever move back towards their home, so none is further: a reader
    /// of the table in parts (`range`) uses it to find entries that moved behind it.
    max_shift: usize,
}

/// How far a read of the table in parts (`Slots::read_part`) has got.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadAt {
    next: usize,
    /// The table's size when the read began; another size means it grew meanwhile.
    size: usize,
}

/// Which table holds a key, and where.
#[derive(Clone, Copy)]
enum At {
    New(usize),
    Old(usize),
}

/// The table's hash of a key: its low 64 bits (the key is an xxh3 hash already).
fn lo(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b)
}

/// A key's first slot in a table of `n`: the hash scaled onto it (multiply-shift), so the
/// size need not be a power of two.
fn home(n: usize, hash: u64) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

fn next_in(n: usize, i: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

/// The slot of `t` holding a key that `is_key` accepts, probing from `hash`'s home; Err with
/// the free slot that ends the probe when there is none.
fn find_in<V: Value>(
    t: &[Slot<V>],
    hash: u64,
    is_key: impl Fn(&[u8; 16]) -> bool,
) -> Result<usize, usize> {
    if t.is_empty() {
        // nothing remembered yet; `insert` grows the table before it looks
        return Err(0);
    }
    let mut i = home(t.len(), hash);
    loop {
        let s = &t[i];
        if s.is_free() {
            return Err(i);
        }
        if is_key(&s.key) {
            return Ok(i);
        }
        i = next_in(t.len(), i);
    }
}

/// Frees slot `i` of `t` and moves back each following entry that may sit closer to its
/// home, so every probe still finds its key before a free slot.
fn remove_in<V: Value>(t: &mut [Slot<V>], i: usize) -> V {
    let n = t.len();
    let val = t[i].val;
    let mut hole = i;
    let mut j = i;
    loop {
        j = next_in(n, j);
        let s = t[j];
        if s.is_free() {
            break;
        }
        let home = home(n, lo(&s.key));
        // The entry may move into the hole if the hole lies between its home and j.
        if (j + n - home) % n >= (j + n - hole) % n {
            t[hole] = s;
            hole = j;
        }
    }
    t[hole] = Slot::FREE;
    val
}

/// The used slots of `t` as entries.
fn entries<V: Value>(t: &[Slot<V>]) -> impl Iterator<Item = (KeyHash, V)> + '_ {
    t.iter()
        .filter(|s| !s.is_free())
        .map(|s| (KeyHash(s.key), s.val))
}

#[allow(unsafe_code)]
fn prefetch_slot<V>(slot: &Slot<V>) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing and the address is in bounds.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

impl<V: Value> Slots<V> {
    pub(crate) fn new(capacity: usize) -> Slots<V> {
        Slots {
            slots: Vec::new(),
            spare: Vec::new(),
            old: Vec::new(),
            start: 0,
            next: 0,
            len: 0,
            full: (capacity * MAX_LOAD.1).div_ceil(MAX_LOAD.0) + 1,
            max_shift: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of slots (it changes only when the table grows, which moves every entry).
    #[cfg(test)]
    fn size(&self) -> usize {
        self.slots.len()
    }

    /// True while the next table is written or the entries of the last one move over.
    #[cfg(test)]
    pub(crate) fn growing(&self) -> bool {
        !self.old.is_empty() || self.spare.capacity() > 0
    }

    fn placed(&mut self, i: usize, hash: u64) {
        let n = self.slots.len();
        self.max_shift = self.max_shift.max((i + n - home(n, hash)) % n);
    }

    pub(crate) fn allocation_size(&self) -> usize {
        (self.slots.capacity() + self.spare.capacity() + self.old.capacity())
            * std::mem::size_of::<Slot<V>>()
    }

    /// Starts loading the home slot of the key whose low 64 bits are `lo8` into the cache.
    /// The cache knows which key leaves next long before it does: at a full table of two
    /// million keys its slot is a cache miss, and an eviction costs one more miss than the
    /// insert that caused it without this.
    pub(crate) fn prefetch(&self, lo8: [u8; 8]) {
        let hash = u64::from_le_bytes(lo8);
        for t in [&self.slots, &self.old] {
            if !t.is_empty() {
                let at = home(t.len(), hash);
                prefetch_slot(&t[at]);
                // and the next cache line: a probe, and the shift after a removal, read on
                // to the end of the key's cluster, about six slots (120 bytes) at this load
                let next_line = 64usize.div_ceil(std::mem::size_of::<Slot<V>>());
                prefetch_slot(&t[(at + next_line).min(t.len() - 1)]);
            }
        }
    }

    fn find(&self, hash: u64, is_key: impl Fn(&[u8; 16]) -> bool) -> Option<At> {
        match find_in(&self.slots, hash, &is_key) {
            Ok(i) => Some(At::New(i)),
            Err(_) if self.old.is_empty() => None,
            Err(_) => find_in(&self.old, hash, is_key).ok().map(At::Old),
        }
    }

    fn find_key(&self, key: &KeyHash) -> Option<At> {
        self.find(lo(&key.0), |k| *k == key.0)
    }

    fn val(&mut self, at: At) -> &mut V {
        match at {
            At::New(i) => &mut self.slots[i].val,
            At::Old(i) => &mut self.old[i].val,
        }
    }

    fn at(&self, at: At) -> V {
        match at {
            At::New(i) => self.slots[i].val,
            At::Old(i) => self.old[i].val,
        }
    }

    pub(crate) fn get(&self, key: &KeyHash) -> Option<V> {
        self.find_key(key).map(|at| self.at(at))
    }

    pub(crate) fn get_mut(&mut self, key: &KeyHash) -> Option<&mut V> {
        let at = self.find_key(key)?;
        Some(self.val(at))
    }

    /// Sets `key`'s value; returns the previous one.
    pub(crate) fn insert(&mut self, key: KeyHash, val: V) -> Option<V> {
        debug_assert!(!val.is_free());
        if (self.len + 1) * MAX_LOAD.1 > self.slots.len() * MAX_LOAD.0 {
            self.grow();
        } else if self.len * PREPARE_AT.1 >= self.slots.len() * PREPARE_AT.0
            && self.slots.len() < self.full
        {
            self.prepare(PREPARE_STEP);
        }
        self.move_over(MOVE_STEP);
        if let Some(at) = self.find_key(&key) {
            return Some(std::mem::replace(self.val(at), val));
        }
        self.put_new(Slot { key: key.0, val });
        self.len += 1;
        None
    }

    /// Places an entry known to be in neither table into `slots`.
    fn put_new(&mut self, s: Slot<V>) {
        let hash = lo(&s.key);
        if let Err(i) = find_in(&self.slots, hash, |_| false) {
            self.slots[i] = s;
            self.placed(i, hash);
        }
    }

    pub(crate) fn remove(&mut self, key: &KeyHash) -> Option<V> {
        let at = self.find_key(key)?;
        Some(self.remove_at(at))
    }

    /// Where the key whose low 64 bits are `lo8` is (see `remove_by_lo`).
    fn find_by_lo(&self, lo8: [u8; 8]) -> Option<At> {
        self.find(u64::from_le_bytes(lo8), |k| k[..8] == lo8)
    }

    /// The value of the key whose low 64 bits are `lo8`.
    pub(crate) fn get_by_lo(&self, lo8: [u8; 8]) -> Option<V> {
        self.find_by_lo(lo8).map(|at| self.at(at))
    }

    /// Removes the key whose low 64 bits are `lo8` if `drop` says yes to its value. Two keys
    /// sharing 64 bits among the ones remembered has odds of about 1 in 10^7 at two million
    /// keys; the cost would be one key forgotten early.
    pub(crate) fn remove_by_lo(&mut self, lo8: [u8; 8], drop: impl Fn(V) -> bool) {
        if let Some(at) = self.find_by_lo(lo8) {
            if drop(*self.val(at)) {
                self.remove_at(at);
            }
        }
    }

    fn remove_at(&mut self, at: At) -> V {
        self.len -= 1;
        match at {
            At::New(i) => remove_in(&mut self.slots, i),
            // Shifts stay within the entry's cluster, which has not moved yet.
            At::Old(i) => remove_in(&mut self.old, i),
        }
    }

    /// The table's size after the next growth.
    fn next_size(&self) -> usize {
        let n = self.slots.len();
        // By half again while the cache fills (doubling would leave a just-grown table 35%
        // full, 57 bytes a key); `full` bounds it (past it only if a caller holds more keys
        // than the capacity, which the cache does not).
        if n < self.full {
            (n + n / 2).max(8).min(self.full)
        } else {
            n * 2
        }
    }

    /// Writes up to `step` more free slots of the next table. Reserving the memory does
    /// not touch it; writing it is where the OS maps and zeroes its pages.
    fn prepare(&mut self, step: usize) {
        let size = self.next_size();
        if self.spare.capacity() < size {
            self.spare = Vec::with_capacity(size);
        }
        let add = step.min(size - self.spare.len().min(size));
        self.spare.extend(std::iter::repeat_n(Slot::FREE, add));
    }

    fn grow(&mut self) {
        // a growth before the last one's move is done (more removals than inserts since,
        // then a refill) finishes that move first
        self.move_over(usize::MAX);
        let size = self.next_size();
        let mut next = std::mem::take(&mut self.spare);
        next.truncate(size);
        next.resize(size, Slot::FREE);
        let old = std::mem::replace(&mut self.slots, next);
        self.max_shift = 0;
        match old.iter().position(Slot::is_free) {
            Some(start) if self.len > 0 => {
                self.start = start;
                self.next = next_in(old.len(), start);
                self.old = old;
            }
            Some(_) => {}
            // no free slot to start the move from (not below MAX_LOAD): all at once
            None => {
                for s in old.into_iter().filter(|s| !s.is_free()) {
                    self.put_new(s);
                }
            }
        }
    }

    /// Moves the entries of about `budget` slots of `old` into `slots`, whole clusters at a
    /// time; frees `old` once all have moved.
    fn move_over(&mut self, mut budget: usize) {
        let n = self.old.len();
        while budget > 0 && n > 0 {
            if self.next == self.start {
                self.old = Vec::new();
                return;
            }
            let mut j = self.next;
            while !self.old[j].is_free() {
                let s = std::mem::replace(&mut self.old[j], Slot::FREE);
                self.put_new(s);
                j = next_in(n, j);
                budget = budget.saturating_sub(1);
            }
            // j is free: the cluster is done and the next one starts after it
            self.next = next_in(n, j);
            budget = budget.saturating_sub(1);
            if j == self.start {
                self.next = self.start;
            }
        }
    }

    /// Every entry, in both tables while a growth is under way.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (KeyHash, V)> + '_ {
        entries(&self.slots).chain(entries(&self.old))
    }

    /// The entries in slots `r` of `slots` (clamped to the table).
    fn range(&self, r: std::ops::Range<usize>) -> impl Iterator<Item = (KeyHash, V)> + '_ {
        let end = r.end.min(self.slots.len());
        entries(&self.slots[r.start.min(end)..end])
    }

    /// Reads the entries of the next `n` slots into `out` (those `keep` maps to a value);
    /// true once the whole table is read. The table may change between parts, and every
    /// entry held from the first part to the last is read: a removal shifts entries back
    /// towards their home, never further than `max_shift`, so each part starts that far
    /// behind where the last one ended (the few entries there are read twice). A growth
    /// moves every entry: while it is under way a call moves `n / 8` slots over instead of
    /// reading, and once it is done the read starts over, `out` emptied.
    pub(crate) fn read_part<T>(
        &mut self,
        at: &mut ReadAt,
        n: usize,
        out: &mut Vec<T>,
        keep: impl Fn(KeyHash, V) -> Option<T>,
    ) -> bool {
        if !self.old.is_empty() {
            // moving an entry is a random write, reading one a sequential read: an eighth
            // as many keeps the pipeline's hold about as short as a part's read
            self.move_over((n / 8).max(1));
            return false;
        }
        let size = self.slots.len();
        if at.size != size {
            out.clear();
            *at = ReadAt { next: 0, size };
        }
        let from = if at.next == 0 {
            0
        } else {
            at.next.saturating_sub(self.max_shift)
        };
        let end = at.next.saturating_add(n.max(1)).min(size);
        out.extend(self.range(from..end).filter_map(|(k, v)| keep(k, v)));
        at.next = end;
        end == size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Key `n`, in threes whose low 64 bits differ by 0-2: their homes coincide or touch, so
    /// clusters form and removals shift them.
    fn clustered(n: u64) -> KeyHash {
        let mut k = [0u8; 16];
        let lo = (n / 3)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(n % 3);
        k[..8].copy_from_slice(&lo.to_le_bytes());
        k[8..].copy_from_slice(&n.to_le_bytes());
        KeyHash(k)
    }

    #[test]
    fn slot_is_twenty_bytes() {
        assert_eq!(std::mem::size_of::<Slot<u32>>(), 20);
    }

    /// Random inserts, updates and removes against std's HashMap, at a load that keeps the
    /// table full (so removals shift long clusters), including keys that share a home.
    #[test]
    fn behaves_like_a_map_under_churn() {
        let mut t = Slots::new(500);
        let mut model: HashMap<[u8; 16], u32> = HashMap::new();
        let mut rnd = crate::test_rng(0x9E37_79B9_7F4A_7C15);
        let key = clustered;
        for step in 0..200_000u32 {
            let k = key(rnd() % 900);
            match rnd() % 3 {
                0 | 1 if model.len() < 500 || model.contains_key(&k.0) => {
                    assert_eq!(t.insert(k, step), model.insert(k.0, step));
                }
                _ => assert_eq!(t.remove(&k), model.remove(&k.0)),
            }
            assert_eq!(t.len(), model.len());
            if step % 10_000 == 0 {
                for n in 0..900 {
                    let k = key(n);
                    assert_eq!(t.get(&k), model.get(&k.0).copied(), "step {step} key {n}");
                }
            }
        }
        let mut all: Vec<_> = t.iter().map(|(k, v)| (k.0, v)).collect();
        let mut want: Vec<_> = model.into_iter().collect();
        all.sort_unstable();
        want.sort_unstable();
        assert_eq!(all, want);
    }

    /// A table read in parts while keys come and go (the snapshot's export): every key held
    /// from the first part to the last is read, though removals shift entries backwards
    /// past the reader. Keys share homes in threes, so clusters are long.
    #[test]
    fn read_in_parts_under_churn_finds_every_key_held_throughout() {
        let key = clustered;
        let mut rnd = crate::test_rng(0x2545_F491_4F6C_DD1D);
        for round in 0..20u64 {
            let mut t = Slots::new(2_000);
            let mut held: Vec<u64> = (0..2_000).map(|i| round * 1_000_000 + i).collect();
            for &n in &held {
                t.insert(key(n), 1);
            }
            let size = t.size();
            let mut read = Vec::new();
            let mut removed = std::collections::HashSet::new();
            let mut at = ReadAt::default();
            let mut fresh = round * 1_000_000 + 500_000;
            while !t.read_part(&mut at, 64, &mut read, |k, _| Some(k.0)) {
                // between parts: remove some held keys, add as many new ones
                for _ in 0..20 {
                    let i = (rnd() % held.len() as u64) as usize;
                    let n = held.swap_remove(i);
                    assert!(t.remove(&key(n)).is_some());
                    removed.insert(n);
                    t.insert(key(fresh), 2);
                    held.push(fresh);
                    fresh += 1;
                }
                assert_eq!(t.size(), size, "at capacity the table does not grow");
            }
            let read: std::collections::HashSet<_> = read.into_iter().collect();
            for n in round * 1_000_000..round * 1_000_000 + 2_000 {
                if !removed.contains(&n) {
                    assert!(
                        read.contains(&key(n).0),
                        "round {round}: key {n} was missed"
                    );
                }
            }
        }
    }

    /// A growth moves a few slots per insert, not the whole table, and lookups, updates
    /// and removals find keys in whichever table holds them meanwhile.
    #[test]
    fn growth_moves_entries_a_few_at_a_time_and_keys_stay_found() {
        let mut t = Slots::new(100_000);
        let mut model: HashMap<[u8; 16], u32> = HashMap::new();
        let mut rnd = crate::test_rng(0x51_7CC1_B727_220A);
        let mut growths = 0;
        let mut size = t.size();
        for n in 0..60_000u64 {
            let k = clustered(n);
            assert_eq!(t.insert(k, n as u32), model.insert(k.0, n as u32));
            if t.size() != size {
                growths += 1;
                size = t.size();
                if model.len() > 1_000 {
                    let moved = size_of_old_entries(&t);
                    assert!(
                        moved * 10 >= model.len() * 9,
                        "the growing insert left {moved} of {} keys to move later",
                        model.len()
                    );
                }
            }
            // meanwhile: updates and removals of random older keys, and lookups
            let old = clustered(rnd() % (n + 1));
            match rnd() % 4 {
                0 => assert_eq!(t.remove(&old), model.remove(&old.0)),
                1 if model.contains_key(&old.0) => {
                    assert_eq!(t.insert(old, 7), model.insert(old.0, 7));
                }
                _ => assert_eq!(t.get(&old), model.get(&old.0).copied()),
            }
            assert_eq!(t.len(), model.len());
        }
        assert!(growths > 5, "{growths} growths");
        for (k, v) in &model {
            assert_eq!(t.get(&KeyHash(*k)), Some(*v));
        }
        let mut all: Vec<_> = t.iter().map(|(k, v)| (k.0, v)).collect();
        let mut want: Vec<_> = model.into_iter().collect();
        all.sort_unstable();
        want.sort_unstable();
        assert_eq!(all, want);
    }

    fn size_of_old_entries(t: &Slots<u32>) -> usize {
        entries(&t.old).count()
    }

    #[test]
    fn a_read_in_parts_during_a_growth_finishes_it_then_reads_every_key() {
        let mut t = Slots::new(100_000);
        let k = |n: u64| KeyHash::of(&n.to_string());
        let mut n = 0;
        while !(t.growing() && size_of_old_entries(&t) > 5_000) {
            t.insert(k(n), 1);
            n += 1;
        }
        let (mut at, mut out) = (ReadAt::default(), Vec::new());
        let mut calls = 0;
        while !t.read_part(&mut at, 1_024, &mut out, |k, _| Some(k)) {
            calls += 1;
        }
        assert!(!t.growing());
        assert!(calls > 2, "the move was done in parts ({calls} calls)");
        out.sort_unstable_by_key(|k| k.0);
        out.dedup();
        assert_eq!(out.len() as u64, n);
    }

    #[test]
    fn a_read_in_parts_starts_over_when_the_table_grows() {
        let mut t = Slots::new(1_000);
        let k = |n: u64| KeyHash::of(&n.to_string());
        for n in 0..10 {
            t.insert(k(n), 1);
        }
        let (mut at, mut out) = (ReadAt::default(), Vec::new());
        assert!(!t.read_part(&mut at, 4, &mut out, |k, _| Some(k)));
        for n in 10..100 {
            t.insert(k(n), 1);
        }
        while !t.read_part(&mut at, 4, &mut out, |k, _| Some(k)) {}
        out.sort_unstable_by_key(|k| k.0);
        out.dedup();
        assert_eq!(
            out.len(),
            100,
            "every key once the read restarted after growth"
        );
    }

    #[test]
    fn a_full_table_stays_its_size_under_churn() {
        let mut t = Slots::new(1_500);
        let k = |n: u64| KeyHash::of(&n.to_string());
        for n in 0..1_500 {
            t.insert(k(n), 1);
        }
        let size = t.allocation_size();
        for n in 1_500..30_000 {
            t.remove(&k(n - 1_500));
            t.insert(k(n), 1);
        }
        assert_eq!(t.allocation_size(), size);
        assert!(size / 1_500 <= 30, "{} bytes a key", size / 1_500);
    }

    #[test]
    fn removes_by_low_half_only_when_told() {
        let mut t = Slots::new(10);
        let a = KeyHash::of("a");
        t.insert(a, 5);
        let lo8 = a.lo();
        t.remove_by_lo(lo8, |v| v == 6);
        assert_eq!(t.get(&a), Some(5));
        t.remove_by_lo(lo8, |v| v == 5);
        assert_eq!(t.get(&a), None);
        assert_eq!(t.len(), 0);
    }
}
