//! The sink's accounting: a bitset of seen sequence numbers and a latency histogram.

use hdrhistogram::Histogram;

use crate::template::StampParser;
use crate::Percentiles;

/// Largest latency the histogram resolves (µs); slower deliveries are clamped to it.
const MAX_LATENCY_US: u64 = 3_600_000_000;

#[derive(Debug)]
pub(crate) struct Tally {
    parser: StampParser,
    seen: Vec<u64>,
    capacity: u64,
    window_ns: (u64, u64),
    pub received: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub unparsable: u64,
    /// Distinct events whose send time is inside the measured window.
    pub delivered_in_window: u64,
    /// Distinct events *received* inside the measured window, whenever they were sent: the
    /// sink's steady output rate, which a backlog that drains after the window cannot inflate.
    pub received_in_window: u64,
    /// Receive time of the last first delivery (ns on the run's clock).
    pub last_receive_ns: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    /// `capacity`: the number of sequence numbers the generator can use (`0..capacity`);
    /// `window_ns`: the measured window `[start, end)` in send time.
    pub(crate) fn new(parser: StampParser, capacity: u64, window_ns: (u64, u64)) -> Tally {
        let words = usize::try_from(capacity.div_ceil(64)).unwrap_or(usize::MAX);
        Tally {
            parser,
            seen: vec![0; words],
            capacity,
            window_ns,
            received: 0,
            distinct: 0,
            duplicates: 0,
            unparsable: 0,
            delivered_in_window: 0,
            received_in_window: 0,
            last_receive_ns: 0,
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Accounts one received body, `rx_ns` being the receive time on the run's clock.
    pub(crate) fn on_message(&mut self, body: &[u8], rx_ns: u64) {
        let Some((seq, t_ns)) = self.parser.parse(body) else {
            self.unparsable += 1;
            return;
        };
        if seq >= self.capacity {
            // Not an event of this run.
            self.unparsable += 1;
            return;
        }
        self.received += 1;
        // seq < capacity, so the index fits in `seen`.
        let word = &mut self.seen[(seq / 64) as usize];
        let bit = 1u64 << (seq % 64);
        if *word & bit != 0 {
            self.duplicates += 1;
            return;
        }
        *word |= bit;
        self.distinct += 1;
        self.last_receive_ns = self.last_receive_ns.max(rx_ns);
        if rx_ns >= self.window_ns.0 && rx_ns < self.window_ns.1 {
            self.received_in_window += 1;
        }
        if t_ns >= self.window_ns.0 && t_ns < self.window_ns.1 {
            self.delivered_in_window += 1;
            self.latency_us
                .saturating_record(rx_ns.saturating_sub(t_ns) / 1_000);
        }
    }

    pub(crate) fn latency_ms(&self) -> Percentiles {
        let h = &self.latency_us;
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1_000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_duplicates_and_window() {
        let mut t = Tally::new(StampParser::new("#"), 100, (1_000, 10_000));
        t.on_message(b"x#0_500", 2_000_000); // before the window: not measured
        t.on_message(b"x#1_1000", 3_001_000); // 3 ms
        t.on_message(b"x#1_1000", 9_000_000); // duplicate
        t.on_message(b"x#99_2000", 1_002_000); // 1 ms
        t.on_message(b"x#100_2000", 1_002_000); // out of range
        t.on_message(b"no marker", 1);
        assert_eq!(t.received, 4);
        assert_eq!(t.distinct, 3);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.unparsable, 2);
        assert_eq!(t.delivered_in_window, 2);
        let p = t.latency_ms();
        assert!((p.max - 3.0).abs() < 0.01, "{p:?}");
        assert!((p.p50 - 1.0).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn empty_histogram_is_zero() {
        let t = Tally::new(StampParser::new("#"), 0, (0, 1));
        assert_eq!(t.latency_ms(), Percentiles::default());
    }
}
