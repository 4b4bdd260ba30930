//! Window primitives: the total order of trades (the exact ordering key that decides first and last
//! values), each partition's event-time clock, and tumbling-window alignment. The aggregation itself
//! runs in DataFusion ([`crate::views`]).

/// The total order of trades within a window: event time, then partition, then offset. It decides
/// open and close deterministically, whichever replica consumed which partition.
pub fn order_key(ts: i64, partition: i32, offset: i64) -> i128 {
    const SEQ: i128 = 10_000_000_000_000_000_000; // 10^19 > (partition << 44 | offset)
    i128::from(ts) * SEQ + i128::from(sequence(partition, offset))
}

/// `partition << 44 | offset`: offsets below 2^44 (17.6 trillion) and partitions below 2^19.
pub fn sequence(partition: i32, offset: i64) -> i64 {
    (i64::from(partition.max(0)) << 44) | (offset & ((1 << 44) - 1))
}

/// Event-time progress of one partition: the largest valid event time seen, in offset order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionClock {
    /// Largest event time seen (epoch ms).
    pub max_event_ms: Option<i64>,
}

impl PartitionClock {
    /// The partition's watermark: the largest event time minus the out-of-orderness bound.
    pub fn watermark(&self, out_of_orderness_ms: i64) -> Option<i64> {
        self.max_event_ms
            .map(|m| m.saturating_sub(out_of_orderness_ms))
    }
}

/// Window start of event time `ts` for tumbling windows of `size_ms`.
#[inline]
pub fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts - ts.rem_euclid(size_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_sorts_by_time_first() {
        assert!(order_key(1, 500, 1 << 43) < order_key(2, 0, 0));
        assert!(order_key(-5, 3, 3) < order_key(0, 0, 0));
        assert!(sequence(1, 0) > sequence(0, (1 << 44) - 1));
    }

    #[test]
    fn window_start_handles_negative_time() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
    }
}
