//! Partition bookkeeping: where each assigned partition resumes, which polled records are new, and
//! how the partition takes part in the topic-wide low watermark.
//!
//! MySQL holds, per partition, the next offset to consume. A record below it was already committed
//! and is skipped; when the consumer starts elsewhere the partition is sought there once.

use std::time::{Duration, Instant};

use tradewind_sink::{PartitionSnapshot, PartitionStatus};

use crate::window::PartitionClock;

/// Where a partition stands with respect to the one seek a load may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// No seek issued since the load: the consumer is expected to deliver the stored offset next.
    NotSought,
    /// A seek to the stored offset is in flight: records polled before it (seek generation below
    /// `gen`) are skipped unless they are the seek target itself.
    Pending {
        /// Seek generation from which polled batches are known to be post-seek.
        gen: u64,
    },
    /// Sought once; later gaps are the broker's (compaction, transactions), not ours.
    Done,
}

/// The state of one assigned partition.
#[derive(Debug)]
pub struct PartState {
    /// Next offset as committed in MySQL (`None`: never committed): the compare-and-set's expectation.
    pub committed: Option<i64>,
    /// Next offset to accept.
    pub next: Option<i64>,
    /// The first offset accepted since the load when nothing was committed yet: where the
    /// partition is read again from if its first commit does not happen (a seek to the log's
    /// logical beginning instead was seen to deliver nothing, or later offsets).
    pub first: Option<i64>,
    /// Event-time progress as of `committed`.
    pub clock: PartitionClock,
    /// Status as of the last commit (`None`: never committed).
    pub status: Option<PartitionStatus>,
    /// Last time a record arrived (idleness); set once per micro-batch by the engine.
    pub last_activity: Instant,
    /// Caught up with the end of the partition (as of the last batch).
    pub at_eof: bool,
    /// The seek state since the load.
    pub seek: Seek,
    /// When the engine last sought this partition back (see `Engine::reseek_stalled`).
    pub sought_at: Option<Instant>,
    /// The broker was found behind the committed offset (reported once).
    pub reset_reported: bool,
}

/// What to do with one polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// New: process it.
    Accept,
    /// Already committed, or polled before a pending seek: skip it.
    Skip,
    /// The consumer delivers from elsewhere than the stored offset: skip it and seek there.
    SkipAndSeek(i64),
}

impl PartState {
    /// A partition as loaded from MySQL.
    pub fn loaded(snap: PartitionSnapshot) -> Self {
        PartState {
            committed: snap.next_offset,
            next: snap.next_offset,
            first: None,
            clock: PartitionClock {
                max_event_ms: snap.max_event_ms,
            },
            status: snap.next_offset.map(|_| PartitionStatus::Active),
            last_activity: Instant::now(),
            at_eof: false,
            seek: Seek::NotSought,
            sought_at: None,
            reset_reported: false,
        }
    }

    /// Decides about the record at `offset`, polled in seek generation `gen`; advances `next` when
    /// it is accepted (the caller stamps [`PartState::last_activity`], once per batch).
    pub fn admit(&mut self, offset: i64, gen: u64) -> Admit {
        if let Seek::Pending { gen: target } = self.seek {
            if gen >= target || Some(offset) == self.next {
                self.seek = Seek::Done; // everything polled before the seek has been seen
            } else {
                return Admit::Skip;
            }
        }
        match self.next {
            Some(n) if offset < n || (offset > n && self.seek == Seek::NotSought) => {
                if self.seek == Seek::NotSought {
                    return Admit::SkipAndSeek(n);
                }
                if offset < n && !self.reset_reported {
                    // After our seek the broker still serves older offsets: it no longer has
                    // offset n (topic recreated or truncated). Never re-count; say it loudly.
                    self.reset_reported = true;
                    tracing::error!(
                        committed = n,
                        served = offset,
                        "the broker's log is behind the offset committed in MySQL (topic \
                         recreated or truncated?); skipping records below it"
                    );
                }
                return Admit::Skip;
            }
            Some(n) if offset > n => {
                tracing::warn!(expected = n, got = offset, "offset gap");
            }
            _ => {}
        }
        if self.next.is_none() {
            self.first.get_or_insert(offset);
        }
        self.next = Some(offset + 1);
        Admit::Accept
    }

    /// Goes back to the committed offset (or, before the first commit, the first offset accepted),
    /// to read again what an undone commit held; the caller seeks there.
    pub fn rewind(&mut self) {
        self.next = self.committed.or(self.first);
    }

    /// The status this partition should have in the low watermark now.
    pub fn desired_status(&self, idle_timeout: Duration) -> PartitionStatus {
        if self.at_eof && self.last_activity.elapsed() >= idle_timeout {
            PartitionStatus::Idle
        } else {
            PartitionStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(next: Option<i64>) -> PartState {
        PartState::loaded(PartitionSnapshot {
            next_offset: next,
            max_event_ms: None,
        })
    }

    #[test]
    fn skips_committed_records_and_seeks_once() {
        let mut p = part(Some(10));
        assert_eq!(p.admit(0, 0), Admit::SkipAndSeek(10));
        p.seek = Seek::Pending { gen: 1 };
        assert_eq!(p.admit(1, 0), Admit::Skip, "polled before the seek");
        assert_eq!(p.admit(10, 0), Admit::Accept, "the seek target itself");
        assert_eq!(p.admit(11, 1), Admit::Accept);
        assert_eq!(p.admit(11, 1), Admit::Skip, "a duplicate");
        assert_eq!(p.next, Some(12));
    }

    #[test]
    fn a_never_committed_partition_accepts_from_the_start() {
        let mut p = part(None);
        assert_eq!(p.admit(5, 0), Admit::Accept);
        assert_eq!(p.admit(6, 0), Admit::Accept);
    }

    #[test]
    fn rewinding_before_the_first_commit_goes_back_to_the_first_record_accepted() {
        let mut p = part(None);
        assert_eq!(p.admit(5, 0), Admit::Accept);
        assert_eq!(p.admit(6, 0), Admit::Accept);
        p.rewind();
        assert_eq!(p.next, Some(5));
        p.seek = Seek::Pending { gen: 2 };
        assert_eq!(p.admit(7, 1), Admit::Skip, "polled before the seek back");
        assert_eq!(p.admit(5, 2), Admit::Accept);
        assert_eq!(p.admit(6, 2), Admit::Accept);
        assert_eq!(p.first, Some(5));
    }
}
