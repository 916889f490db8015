//! A first-in, first-out queue kept in blocks, for the dedup cache's arrivals and the
//! stale guard's touches.
//!
//! Written by hand because `VecDeque` grows by copying itself whole into a larger
//! allocation: at two million 12-byte entries, 24 MB copied while the pipeline waits (the
//! stale guard's queue can hold twice its entities). Here the queue grows a block at a time and
//! never moves an entry; only the list of blocks (a pointer a block) is ever copied. A new
//! block holds an eighth of the entries queued (from 64 to 4,096), so a small cache's queue
//! stays small and a large one's has at most an eighth more room than it holds. No
//! maintained crate offers this (the chunked deques on crates.io are append-only or
//! unmaintained).

use std::collections::VecDeque;

/// The most entries a block holds: 48 KiB of 12-byte entries, small next to a cache of
/// millions and large enough that the list of blocks stays short.
const BLOCK: usize = 4096;
const MIN_BLOCK: usize = 64;

pub(crate) struct Fifo<T> {
    /// Every block is full except the last (blocks differ in size); entries before `head`
    /// in the first have left.
    blocks: VecDeque<Vec<T>>,
    head: usize,
    len: usize,
    /// The last block emptied, kept for the next one needed: a queue at its steady size
    /// takes one off the front for every one it adds at the back.
    spare: Option<Vec<T>>,
}

impl<T: Copy> Fifo<T> {
    pub(crate) fn new() -> Fifo<T> {
        Fifo {
            blocks: VecDeque::new(),
            head: 0,
            len: 0,
            spare: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push_back(&mut self, entry: T) {
        match self.blocks.back_mut() {
            Some(b) if b.len() < b.capacity() => b.push(entry),
            _ => {
                let size = (self.len / 8).clamp(MIN_BLOCK, BLOCK);
                let mut b = self
                    .spare
                    .take()
                    .unwrap_or_else(|| Vec::with_capacity(size));
                b.push(entry);
                self.blocks.push_back(b);
            }
        }
        self.len += 1;
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.get(0)
    }

    /// The entry `i` places behind the front.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        // only ever asked for a few places ahead: a walk over the first block or two
        let mut at = self.head + i;
        for b in &self.blocks {
            if at < b.len() {
                return b.get(at);
            }
            at -= b.len();
        }
        None
    }

    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let first = self.blocks.front()?;
        let entry = *first.get(self.head)?;
        self.head += 1;
        self.len -= 1;
        if self.head == first.len() {
            // The first block is used up. It is also the last when the queue is now empty:
            // then it is reused in place rather than handed round.
            self.head = 0;
            if self.blocks.len() == 1 {
                if let Some(b) = self.blocks.front_mut() {
                    b.clear();
                }
            } else if let Some(mut b) = self.blocks.pop_front() {
                b.clear();
                self.spare = Some(b);
            }
        }
        Some(entry)
    }

    /// Bytes allocated for entries, the spare block included.
    pub(crate) fn allocation_size(&self) -> usize {
        let slots: usize = self
            .blocks
            .iter()
            .chain(&self.spare)
            .map(Vec::capacity)
            .sum();
        slots * std::mem::size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn behaves_like_a_queue_across_blocks() {
        let mut q = Fifo::new();
        let mut model = VecDeque::new();
        let mut next = 0u64;
        // grow over several blocks, drain partly, grow again, drain fully: every order of
        // pushes and pops the caches make
        for (push, pop) in [
            (3 * BLOCK + 5, BLOCK + 7),
            (2 * BLOCK, 4 * BLOCK - 2),
            (10, 20),
        ] {
            for _ in 0..push {
                q.push_back(next);
                model.push_back(next);
                next += 1;
            }
            for i in [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 3] {
                assert_eq!(q.get(i), model.get(i));
            }
            for _ in 0..pop {
                assert_eq!(q.pop_front(), model.pop_front());
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.front(), model.front());
        }
        assert_eq!(q.pop_front(), None);
        q.push_back(7);
        assert_eq!(q.pop_front(), Some(7));
    }

    #[test]
    fn memory_follows_the_entries_held() {
        let mut q = Fifo::new();
        let held = |q: &Fifo<u32>| q.allocation_size() as f64 / (4 * q.len()) as f64;
        for n in [100, 1_000, 10_000, 100_000] {
            while q.len() < n {
                q.push_back(0);
            }
            // a small queue in small blocks, a large one with at most an eighth to spare
            let most = if n < 1_000 { 2.0 } else { 1.15 };
            assert!(held(&q) <= most, "{n}: {}", held(&q));
        }
        // at a steady size (one out for one in) that stays so however long it runs
        for i in 0..100 * BLOCK {
            q.pop_front();
            q.push_back(i as u32);
        }
        assert!(held(&q) <= 1.15, "{}", held(&q));
        while q.pop_front().is_some() {}
        assert!(q.allocation_size() <= 2 * BLOCK * 4);
    }
}
