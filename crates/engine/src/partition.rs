//! The lifecycle of one assigned partition, as one state machine: where it resumes, which polled
//! records are new, the seeks the engine issues for it, and how it takes part in the topic-wide low
//! watermark.
//!
//! MySQL holds, per partition, the next offset to consume. A partition with no stored offset starts
//! at the log's start as the broker reports it (its low watermark), never at the logical
//! "beginning": every read therefore has a known position, and a seek always has an offset to check
//! the first record it delivers against.
//!
//! Transitions (each a method): [`PartState::loaded`] (assign, or reload after a fence),
//! [`PartState::admit`] (a fetched record), [`PartState::reached_end`] (a partition-end event),
//! [`PartState::sought`] / [`PartState::seek_failed`]
//! (seek done / failed), [`PartState::rewind`] (a commit refused, interrupted or built on one that
//! did not happen), [`PartState::committed_to`] (a commit applied) and [`PartState::skip_deleted`]
//! (the log no longer holds the records at `next`).
//!
//! Invariants, checked by the model-based test below:
//! - `next` moves forward only by accepting the record at `next` (to `next + 1`), or over a gap
//!   that is counted ([`Admit::Accept`]'s `gap`, [`PartState::skip_deleted`]); a rewind moves it
//!   back to `committed` (or `base`). So the records accepted since the last commit are exactly the
//!   log's records in `[committed, next)`, each once, and a commit never passes an unmerged record.
//! - While a seek is pending, a record polled before it is accepted only if it is `next` (the old
//!   stream may run on from the target); the seek's own stream must deliver `next` (a forward jump
//!   is sought again, a bounded number of times, and then accepted as a counted gap, loudly).
//! - A forward jump from an offset at which librdkafka reported the partition's end is librdkafka
//!   resuming past it after a pause (see [`PartState::eof_at`]): sought back, never a gap.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tradewind_sink::{PartitionSnapshot, PartitionStatus};

use crate::window::PartitionClock;

/// How often a forward jump right after the engine's own seek is sought again before it is taken
/// as a gap in the log (a control record or a compacted range at the seek target).
pub const MAX_GAP_RESEEKS: u32 = 3;

/// At most this many partition-end offsets ahead of the read position are remembered (they only
/// pile up while the partition is read again far behind its end; one per end reached).
const MAX_EOF_OFFSETS: usize = 1_024;

/// Where a partition stands with respect to the seeks the engine issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// No seek issued since the load: the consumer is expected to deliver `next` first (it was
    /// assigned there); any other first record asks for a seek.
    Expect,
    /// A seek to `to` is in flight: records polled before it (seek generation below `gen`) are
    /// taken only in order from `next` (the old stream may overlap the target), and the seek's own
    /// stream is read from `next` on (what it delivers below `next` was taken already).
    Pending {
        /// Seek generation from which polled batches are known to be post-seek.
        gen: u64,
        /// The seek's target.
        to: i64,
        /// Seeks already issued again for a forward jump right after this one.
        retries: u32,
    },
    /// The seek call to `to` failed: the consumer's position is unknown. Only `to` itself is
    /// accepted; the engine issues the seek again (once per micro-batch).
    Failed {
        /// The offset to seek to.
        to: i64,
    },
    /// Reading on from `next` in order: a later jump forward is the broker's gap (compaction,
    /// transaction markers), accepted and counted, unless librdkafka reported the partition's end
    /// at `next` (then it is librdkafka's skip, see [`PartState::eof_at`], and `next` is sought).
    Reading,
}

/// The state of one assigned partition.
#[derive(Debug)]
pub struct PartState {
    /// Next offset as committed in MySQL (`None`: never committed): the compare-and-set's expectation.
    pub committed: Option<i64>,
    /// Where this partition is read from while nothing is committed: the log's start when it was
    /// first loaded (kept across reloads, so what was read before a fence is read again).
    pub base: i64,
    /// Next offset to accept.
    pub next: i64,
    /// Event-time progress as of `committed`.
    pub clock: PartitionClock,
    /// Status as of the last commit (`None`: never committed).
    pub status: Option<PartitionStatus>,
    /// Last time a record arrived (idleness); set once per micro-batch by the engine.
    pub last_activity: Instant,
    /// Caught up with the end of the partition (as of the last batch).
    pub at_eof: bool,
    /// The end offsets (at or after `next`) of the partition-end events librdkafka delivered.
    /// librdkafka moves its application position to one past such an offset (it counts the event
    /// like a message), and a pause (every group rebalance pauses the assigned partitions)
    /// resumes fetching there: the record at the end offset, the first one produced after the
    /// event, is then never delivered. A forward jump from `next` while `next` is such an offset
    /// is therefore sought back, never taken as a gap in the log (see [`PartState::admit`]).
    pub eof_at: BTreeSet<i64>,
    /// The seek state.
    pub seek: Seek,
    /// When the engine last sought this partition (see `Engine::reseek_stalled`).
    pub sought_at: Option<Instant>,
    /// The broker was found behind the offset sought (reported once).
    pub reset_reported: bool,
}

/// What to do with one polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// New: process it. `gap`: offsets the broker skipped right before it (counted, logged).
    Accept {
        /// Offsets between the expected one and this record that the log did not deliver.
        gap: u64,
    },
    /// Already read, or polled before a pending seek: skip it.
    Skip,
    /// Skip it and seek to this offset: the consumer delivers from elsewhere.
    SeekTo(i64),
}

impl PartState {
    /// A partition as loaded from MySQL; `base` is where it is read from when MySQL holds no offset
    /// (the log's start, or the base of the state this one reloads).
    pub fn loaded(snap: PartitionSnapshot, base: i64) -> Self {
        PartState {
            committed: snap.next_offset,
            base,
            next: snap.next_offset.unwrap_or(base),
            clock: PartitionClock {
                max_event_ms: snap.max_event_ms,
            },
            status: snap.next_offset.map(|_| PartitionStatus::Active),
            last_activity: Instant::now(),
            at_eof: false,
            eof_at: BTreeSet::new(),
            seek: Seek::Expect,
            sought_at: None,
            reset_reported: false,
        }
    }

    /// Where reading resumes after a rewind or a reload: the committed offset, else `base`.
    pub fn resume_at(&self) -> i64 {
        self.committed.unwrap_or(self.base)
    }

    /// Decides about the record at `offset`, polled in seek generation `gen`; advances `next` when
    /// it is accepted (the caller stamps [`PartState::last_activity`], once per batch).
    pub fn admit(&mut self, offset: i64, gen: u64) -> Admit {
        match self.seek {
            Seek::Expect => {
                if offset != self.next {
                    return Admit::SeekTo(self.next);
                }
                self.seek = Seek::Reading;
            }
            Seek::Pending {
                gen: target,
                to,
                retries,
            } => {
                let post_seek = gen >= target;
                if offset == self.next {
                    // The next record: from the seek's own stream it ends the seek; polled before
                    // it (the old stream overlapping the target), it is taken and the seek stays
                    // pending, so the old stream's later jumps are never taken as gaps.
                    if post_seek {
                        self.seek = Seek::Reading;
                    }
                } else if offset < self.next {
                    if post_seek && offset < to {
                        self.report_behind(offset, to);
                    }
                    return Admit::Skip; // read already, or polled before the seek
                } else if !post_seek {
                    return Admit::Skip; // the old stream jumps: the seek's own stream delivers it
                } else if retries < MAX_GAP_RESEEKS {
                    // A jump forward right after our own seek: never an accept.
                    self.seek = Seek::Pending {
                        gen,
                        to: self.next,
                        retries: retries + 1,
                    };
                    return Admit::SeekTo(self.next);
                } else {
                    tracing::error!(
                        expected = self.next,
                        got = offset,
                        "the log delivers a later offset than the one sought, after {MAX_GAP_RESEEKS} seeks; taking it as a gap in the log"
                    );
                    self.seek = Seek::Reading;
                }
            }
            Seek::Failed { to } => {
                if offset != to {
                    return Admit::Skip;
                }
                self.seek = Seek::Reading;
            }
            Seek::Reading => {
                if offset < self.next {
                    return Admit::Skip; // read already (a seek's stream overlapping the old one)
                }
                if offset > self.next && self.eof_at.contains(&self.next) {
                    // librdkafka skipped the record at the partition's end (see `eof_at`).
                    return Admit::SeekTo(self.next);
                }
            }
        }
        let gap = (offset - self.next).max(0) as u64;
        self.next = offset + 1;
        Admit::Accept { gap }
    }

    /// The broker serves offsets below the one sought: it no longer has it (topic recreated or
    /// truncated). Never re-counted; said loudly once.
    fn report_behind(&mut self, served: i64, sought: i64) {
        if !self.reset_reported {
            self.reset_reported = true;
            tracing::error!(
                sought,
                served,
                "the broker's log is behind the offset sought (topic recreated or truncated?); skipping records below it"
            );
        }
    }

    /// A seek to `to` was issued; batches polled from seek generation `gen` on are post-seek.
    pub fn sought(&mut self, to: i64, gen: u64) {
        let retries = match self.seek {
            Seek::Pending { to: t, retries, .. } if t == to => retries,
            _ => 0,
        };
        self.seek = Seek::Pending { gen, to, retries };
        self.sought_at = Some(Instant::now());
    }

    /// librdkafka reported the partition's end at `offset` (see [`PartState::eof_at`]). Call it
    /// for a batch's events before admitting its records (each event follows the records before
    /// it, whose offsets are lower).
    pub fn reached_end(&mut self, offset: i64) {
        let next = self.next;
        self.eof_at.retain(|&o| o >= next);
        if self.eof_at.len() < MAX_EOF_OFFSETS {
            self.eof_at.insert(offset);
        }
    }

    /// The seek call to `to` failed: the consumer's position is unknown, so only `to` itself is
    /// accepted until the seek is issued again ([`PartState::seek_to_retry`]).
    pub fn seek_failed(&mut self, to: i64) {
        self.seek = Seek::Failed { to };
        self.sought_at = Some(Instant::now());
    }

    /// The offset of a failed seek to issue again, if any.
    pub fn seek_to_retry(&self) -> Option<i64> {
        match self.seek {
            Seek::Failed { to } => Some(to),
            _ => None,
        }
    }

    /// Whether a seek to `to` is already in flight (a second one would only widen the window in
    /// which records polled before it are skipped).
    pub fn seeking_to(&self, to: i64) -> bool {
        matches!(self.seek, Seek::Pending { to: t, .. } if t == to)
    }

    /// Goes back to where reading resumes, to read again what an undone commit held; returns the
    /// offset the caller seeks to.
    pub fn rewind(&mut self) -> i64 {
        self.next = self.resume_at();
        self.next
    }

    /// The log's start has moved past `next` (retention deleted records never read): reading goes
    /// on from `low`; returns the offsets skipped, which the caller counts as a gap.
    pub fn skip_deleted(&mut self, low: i64) -> u64 {
        let gap = (low - self.next).max(0) as u64;
        self.next = self.next.max(low);
        gap
    }

    /// A commit that advanced this partition to `next_offset` was applied.
    pub fn committed_to(
        &mut self,
        next_offset: i64,
        status: PartitionStatus,
        clock: Option<PartitionClock>,
    ) {
        self.committed = Some(next_offset);
        // Records read since (folded for the next commit) keep `next` ahead; `next` is never
        // moved forward here (that would pass records nobody merged).
        debug_assert!(
            self.next >= next_offset,
            "a commit passed the read position"
        );
        self.status = Some(status);
        if let Some(c) = clock {
            self.clock = c;
        }
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

    fn part(next: Option<i64>, base: i64) -> PartState {
        PartState::loaded(
            PartitionSnapshot {
                next_offset: next,
                max_event_ms: None,
            },
            base,
        )
    }

    const ACCEPT: Admit = Admit::Accept { gap: 0 };

    #[test]
    fn a_jump_from_the_partition_end_is_sought_back_not_taken_as_a_gap() {
        let mut p = part(Some(10), 0);
        assert_eq!(p.admit(10, 0), ACCEPT);
        p.reached_end(11);
        // A rebalance paused the partition; librdkafka resumed at 12 (past the end event).
        assert_eq!(p.admit(12, 0), Admit::SeekTo(11));
        p.sought(11, 1);
        assert_eq!(p.admit(12, 0), Admit::Skip, "polled before the seek");
        assert_eq!(p.admit(11, 1), ACCEPT);
        assert_eq!(
            p.admit(13, 1),
            Admit::Accept { gap: 1 },
            "a later jump is the log's gap"
        );
        assert_eq!(p.next, 14);
    }

    #[test]
    fn skips_committed_records_and_seeks_once() {
        let mut p = part(Some(10), 0);
        assert_eq!(p.admit(0, 0), Admit::SeekTo(10));
        p.sought(10, 1);
        assert_eq!(p.admit(1, 0), Admit::Skip, "polled before the seek");
        assert_eq!(p.admit(10, 0), ACCEPT, "the seek target itself");
        assert_eq!(p.admit(11, 1), ACCEPT);
        assert_eq!(p.admit(11, 1), Admit::Skip, "a duplicate");
        assert_eq!(p.next, 12);
    }

    #[test]
    fn a_never_committed_partition_starts_at_the_log_start() {
        let mut p = part(None, 5);
        assert_eq!(p.next, 5);
        assert_eq!(p.admit(5, 0), ACCEPT);
        assert_eq!(p.admit(6, 0), ACCEPT);
        let mut q = part(None, 5);
        assert_eq!(q.admit(7, 0), Admit::SeekTo(5), "not where the log starts");
    }

    /// Issue 31's unit case: a state loaded with no offset and a pending seek used to skip the
    /// records the seek delivered into the micro-batch that straddles it, then accept the next
    /// micro-batch's first record wherever it was.
    #[test]
    fn records_a_seek_delivers_into_the_straddling_batch_are_accepted() {
        let mut p = part(None, 0);
        let to = p.rewind();
        p.sought(to, 5);
        assert_eq!(p.admit(0, 4), ACCEPT, "the target, in the straddling batch");
        assert_eq!(p.admit(1, 4), ACCEPT);
        assert_eq!(p.admit(2, 5), ACCEPT);
        assert_eq!(p.next, 3);
        // The old stream's records are taken in order only (its jumps are left to the seek's own
        // stream), and the seek's own stream must deliver `next`: a jump is sought again.
        let mut q = part(None, 0);
        q.sought(0, 5);
        assert_eq!(q.admit(0, 4), ACCEPT);
        assert_eq!(q.admit(1, 4), ACCEPT);
        assert_eq!(q.admit(7, 4), Admit::Skip, "the old stream jumps");
        assert_eq!(
            q.admit(0, 5),
            Admit::Skip,
            "the seek's stream, read already"
        );
        assert_eq!(q.admit(20_000, 5), Admit::SeekTo(2));
        assert_eq!(q.next, 2);
    }

    #[test]
    fn a_forward_jump_right_after_a_seek_is_sought_again_not_accepted() {
        let mut p = part(Some(100), 0);
        p.sought(100, 3);
        for i in 0..MAX_GAP_RESEEKS {
            assert_eq!(p.admit(120, 3 + i as u64), Admit::SeekTo(100));
            p.sought(100, 4 + i as u64);
        }
        // The log really has nothing at 100 (a control record): a counted gap, after the retries.
        assert_eq!(
            p.admit(120, 3 + MAX_GAP_RESEEKS as u64),
            Admit::Accept { gap: 20 }
        );
    }

    #[test]
    fn a_second_seek_to_the_same_offset_is_recognised() {
        let mut p = part(None, 0);
        p.sought(0, 5);
        assert!(p.seeking_to(0));
        assert!(!p.seeking_to(7));
    }

    #[test]
    fn a_failed_seek_checks_the_next_record_again() {
        let mut p = part(Some(50), 0);
        p.seek_failed(50);
        assert_eq!(p.admit(80, 3), Admit::Skip, "never accepts the gap");
        assert_eq!(p.seek_to_retry(), Some(50));
        assert_eq!(p.admit(50, 3), ACCEPT);
        assert_eq!(p.seek_to_retry(), None);
    }

    #[test]
    fn rewinding_before_the_first_commit_goes_back_to_the_base() {
        let mut p = part(None, 5);
        assert_eq!(p.admit(5, 0), ACCEPT);
        assert_eq!(p.admit(6, 0), ACCEPT);
        assert_eq!(p.rewind(), 5);
        p.sought(5, 2);
        assert_eq!(p.admit(7, 1), Admit::Skip, "polled before the seek back");
        assert_eq!(p.admit(5, 2), ACCEPT);
        assert_eq!(p.admit(6, 2), ACCEPT);
    }

    #[test]
    fn retention_past_next_is_a_counted_gap() {
        let mut p = part(None, 0);
        assert_eq!(p.skip_deleted(40), 40);
        assert_eq!(p.next, 40);
        assert_eq!(p.skip_deleted(10), 0, "never backwards");
    }
}

/// Model-based test of the partition lifecycle: random interleavings of fetches (a micro-batch
/// gathered in pieces while the engine seeks), commits, fences by another replica, undone commits,
/// failed seeks, records appended to a live log and librdkafka's pauses (which resume after a
/// partition-end event's offset), against a model of the log and of what MySQL holds.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    /// One event of the interleaving.
    #[derive(Debug, Clone)]
    enum Ev {
        /// The poll thread takes up to n records from the consumer's position into the batch being
        /// gathered (which keeps the seek generation it was started in).
        Gather(usize),
        /// The batch being gathered is cut and handed to the engine.
        Cut,
        /// The engine processes the oldest cut batch (may seek).
        Process,
        /// The engine commits what it accepted since the last commit.
        Commit,
        /// Another replica commits the partition forward by n records (our next commit is fenced).
        OtherCommits(usize),
        /// A commit was refused or interrupted: the engine rewinds and seeks back.
        Undo,
        /// The next seek call fails.
        FailNextSeek,
        /// n records are appended to the log (a live partition).
        Produce(usize),
        /// librdkafka pauses the partition (a group rebalance) and resumes it: fetching goes on
        /// from its application position, which a partition-end event moved past the end offset.
        Pause,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => (1usize..40).prop_map(Ev::Gather),
            2 => Just(Ev::Cut),
            3 => Just(Ev::Process),
            2 => Just(Ev::Commit),
            1 => (0usize..60).prop_map(Ev::OtherCommits),
            1 => Just(Ev::Undo),
            1 => Just(Ev::FailNextSeek),
            1 => (1usize..20).prop_map(Ev::Produce),
            1 => Just(Ev::Pause),
        ]
    }

    type Batch = (u64, Vec<i64>, Vec<i64>);

    /// The world around one partition's state.
    struct World {
        /// Offsets the log holds, ascending (holes are control records or compacted ranges).
        log: Vec<i64>,
        /// Index into `log` of the consumer's next delivery.
        pos: usize,
        seek_gen: u64,
        /// librdkafka's application position: one past the last message or partition-end event
        /// handed to the poll thread.
        app_pos: i64,
        /// The batch being gathered: its seek generation, records, and the partition-end events
        /// taken into it.
        gathering: Batch,
        cut: std::collections::VecDeque<Batch>,
        /// MySQL: the partition's next offset, and how often each offset was merged.
        mysql: Option<i64>,
        merged: std::collections::BTreeMap<i64, u32>,
        /// The engine's state, and the offsets (and counted gaps) accepted since its last commit.
        st: PartState,
        accepted: Vec<i64>,
        gaps: u64,
        fail_next_seek: bool,
    }

    impl World {
        fn new(log: Vec<i64>) -> Self {
            let base = log.first().copied().unwrap_or(0);
            let st = PartState::loaded(
                PartitionSnapshot {
                    next_offset: None,
                    max_event_ms: None,
                },
                base,
            );
            World {
                log,
                pos: 0,
                seek_gen: 0,
                app_pos: 0,
                gathering: (0, Vec::new(), Vec::new()),
                cut: Default::default(),
                mysql: None,
                merged: Default::default(),
                st,
                accepted: Vec::new(),
                gaps: 0,
                fail_next_seek: false,
            }
        }

        fn end(&self) -> i64 {
            self.log.last().map_or(0, |l| l + 1)
        }

        /// The consumer seeks: its next delivery is the first record at or after `to`.
        fn seek(&mut self, to: i64) {
            if std::mem::take(&mut self.fail_next_seek) {
                self.st.seek_failed(to);
                return;
            }
            self.pos = self.log.partition_point(|&o| o < to);
            self.app_pos = to;
            self.seek_gen += 1;
            self.st.sought(to, self.seek_gen);
        }

        fn step(&mut self, e: &Ev) {
            match e {
                Ev::Gather(n) => {
                    // The poll thread re-reads the seek generation while its batch is empty.
                    if self.gathering.1.is_empty() {
                        self.gathering.0 = self.seek_gen;
                    }
                    let take = (*n).min(self.log.len() - self.pos);
                    let from = self.pos;
                    self.gathering
                        .1
                        .extend_from_slice(&self.log[from..from + take]);
                    self.pos += take;
                    if take > 0 {
                        self.app_pos = self.log[self.pos - 1] + 1;
                    }
                    if self.pos == self.log.len() {
                        // The partition-end event, at the end offset; librdkafka counts it like
                        // a message in its application position.
                        let end = self.end();
                        self.gathering.2.push(end);
                        self.app_pos = self.app_pos.max(end + 1);
                    }
                }
                Ev::Produce(n) => {
                    let end = self.end();
                    self.log.extend(end..end + *n as i64);
                }
                Ev::Pause => {
                    self.pos = self.log.partition_point(|&o| o < self.app_pos);
                }
                Ev::Cut => {
                    let next = (self.seek_gen, Vec::new(), Vec::new());
                    let b = std::mem::replace(&mut self.gathering, next);
                    self.cut.push_back(b);
                }
                Ev::Process => {
                    let Some((gen, batch, ends)) = self.cut.pop_front() else {
                        return;
                    };
                    for end in ends {
                        self.st.reached_end(end);
                    }
                    for o in batch {
                        match self.st.admit(o, gen) {
                            Admit::Accept { gap } => {
                                self.accepted.push(o);
                                self.gaps += gap;
                            }
                            Admit::Skip => {}
                            Admit::SeekTo(to) => self.seek(to),
                        }
                    }
                    // The engine issues a failed seek again once per micro-batch.
                    if let Some(to) = self.st.seek_to_retry() {
                        self.seek(to);
                    }
                }
                Ev::Commit => self.commit(),
                Ev::OtherCommits(n) => {
                    // The other replica read the log from MySQL's offset and merged n records.
                    let from = self.mysql.unwrap_or(self.st.base);
                    let i = self.log.partition_point(|&o| o < from);
                    let upto = (i + n).min(self.log.len());
                    for &o in &self.log[i..upto] {
                        *self.merged.entry(o).or_default() += 1;
                    }
                    let to = self.log.get(upto).copied().unwrap_or(self.end());
                    self.mysql = Some(to.max(from));
                }
                Ev::Undo => {
                    self.accepted.clear();
                    self.gaps = 0;
                    let to = self.st.rewind();
                    if !self.st.seeking_to(to) {
                        self.seek(to);
                    }
                }
                Ev::FailNextSeek => self.fail_next_seek = true,
            }
        }

        fn commit(&mut self) {
            let (expected, next) = (self.st.committed, self.st.next);
            if next == self.st.resume_at() {
                return; // nothing read since
            }
            if expected != self.mysql {
                // Fenced: the whole transaction rolls back; reload and seek to what MySQL holds.
                let base = self.st.base;
                self.st = PartState::loaded(
                    PartitionSnapshot {
                        next_offset: self.mysql,
                        max_event_ms: None,
                    },
                    base,
                );
                self.accepted.clear();
                self.gaps = 0;
                let to = self.st.next;
                self.seek(to);
                return;
            }
            // What the commit claims, [from, next), must be exactly what was accepted.
            let from = self.st.resume_at();
            let want: Vec<i64> = self
                .log
                .iter()
                .copied()
                .filter(|&o| o >= from && o < next)
                .collect();
            assert_eq!(
                self.accepted, want,
                "commit [{from}, {next}) holds other records than the log"
            );
            let span = (next - from) as u64;
            assert_eq!(
                self.accepted.len() as u64 + self.gaps,
                span,
                "the audit does not add up"
            );
            for &o in &self.accepted {
                *self.merged.entry(o).or_default() += 1;
            }
            self.accepted.clear();
            self.gaps = 0;
            self.mysql = Some(next);
            self.st.committed_to(next, PartitionStatus::Active, None);
        }

        /// Reads on until caught up (no more faults) and checks every record was merged once.
        fn drain(&mut self) {
            self.fail_next_seek = false;
            for _ in 0..10_000 {
                if self.mysql == Some(self.end()) || (self.log.is_empty()) {
                    break;
                }
                for e in [Ev::Gather(50), Ev::Cut, Ev::Process, Ev::Commit] {
                    self.step(&e);
                }
                // A drain with nothing pending that stays behind: the engine's stall safety net
                // (`Engine::reseek_stalled`, after 5 s).
                let nothing_cut = self.cut.iter().all(|(_, b, _)| b.is_empty());
                if nothing_cut && self.pos == self.log.len() && self.st.next < self.end() {
                    let to = self.st.next;
                    self.seek(to);
                }
            }
            assert_eq!(
                self.mysql.unwrap_or(self.end()),
                self.end(),
                "drain stalled"
            );
            for &o in &self.log {
                assert_eq!(
                    self.merged.get(&o).copied().unwrap_or(0),
                    1,
                    "offset {o} merged a wrong number of times"
                );
            }
        }
    }

    /// A log: offsets from `start` with a few holes (control records).
    fn log() -> impl Strategy<Value = Vec<i64>> {
        (
            0i64..5,
            20usize..200,
            proptest::collection::vec(0usize..200, 0..4),
        )
            .prop_map(|(start, n, holes)| {
                (start..start + n as i64)
                    .filter(|o| !holes.contains(&((o - start) as usize)))
                    .collect()
            })
    }

    fn cases() -> u32 {
        std::env::var("TW_MODEL_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]
        #[test]
        fn no_offset_committed_past_unmerged_records_and_none_merged_twice(
            log in log(),
            events in proptest::collection::vec(ev(), 0..120),
        ) {
            let mut w = World::new(log);
            for e in &events {
                w.step(e);
            }
            w.drain();
        }
    }
}
