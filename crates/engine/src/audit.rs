//! The offset audit: every commit's offset range must be accounted for, record by record, by what
//! the engine did with the records in it. Per partition and commit: offsets committed
//! (`next_offset - expected_offset`) = records accepted + offsets the log did not deliver (counted
//! gaps), and records accepted = valid trades + records dead-lettered. A commit that passes records
//! nobody merged (the silent loss of issue 31) fails the first equation.
//!
//! In live mode a mismatch is logged and counted (`tradewind_engine_audit_mismatches_total`); at the
//! end of a drain the audit is printed per partition and a mismatch makes the drain fail.

use std::collections::BTreeMap;
use std::fmt;

use crate::raw::RawBatch;

/// What one commit (or one micro-batch, or a fold of several) did with one partition's records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Records accepted (new, in order).
    pub records: u64,
    /// Valid trades among them (windowed by at least one view, or routed to the late topic).
    pub trades: u64,
    /// Records dead-lettered (invalid, or behind a row MySQL refused).
    pub dead_lettered: u64,
    /// Trades routed to the late topic (too late for at least one view).
    pub late: u64,
    /// Offsets the log did not deliver (control records, compaction, retention).
    pub gaps: u64,
}

impl Tally {
    /// Adds `other` in.
    pub fn add(&mut self, other: &Tally) {
        self.records += other.records;
        self.trades += other.trades;
        self.dead_lettered += other.dead_lettered;
        self.late += other.late;
        self.gaps += other.gaps;
    }
}

/// Per partition tallies.
pub type Tallies = BTreeMap<i32, Tally>;

/// Adds `from` into `into`.
pub fn merge(into: &mut Tallies, from: &Tallies) {
    for (p, t) in from {
        into.entry(*p).or_default().add(t);
    }
}

/// Counts, per partition, the raw records at `indices` into `field` of `tallies` (one map lookup
/// per run of equal partitions, not per record).
pub fn count_by_partition(
    tallies: &mut Tallies,
    raw: &RawBatch,
    indices: impl Iterator<Item = usize>,
    field: fn(&mut Tally) -> &mut u64,
) {
    let mut run: Option<(i32, u64)> = None;
    for i in indices {
        let p = raw.partitions[i];
        match &mut run {
            Some((q, n)) if *q == p => *n += 1,
            _ => {
                if let Some((q, n)) = run.take() {
                    *field(tallies.entry(q).or_default()) += n;
                }
                run = Some((p, 1));
            }
        }
    }
    if let Some((q, n)) = run {
        *field(tallies.entry(q).or_default()) += n;
    }
}

/// A commit whose offsets and records do not agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The partition.
    pub partition: i32,
    /// The committed range, `[from, to)`.
    pub from: i64,
    /// End of the committed range (exclusive).
    pub to: i64,
    /// What the commit held for it.
    pub tally: Tally,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        write!(
            f,
            "partition {} offsets [{}, {}) committed ({} offsets) but {} records accepted ({} trades, {} dead-lettered) and {} gap offsets",
            self.partition,
            self.from,
            self.to,
            self.to - self.from,
            t.records,
            t.trades,
            t.dead_lettered,
            t.gaps
        )
    }
}

/// One partition's audit over a run.
#[derive(Debug, Default, Clone)]
pub struct PartitionAudit {
    /// The offset ranges this run committed, `[from, to)`, adjacent ranges joined.
    pub ranges: Vec<(i64, i64)>,
    /// What the committed ranges held.
    pub tally: Tally,
    /// Commits whose offsets and records did not agree.
    pub mismatches: Vec<Mismatch>,
}

/// The audit of a run: per partition, what it committed and what was in it.
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Per partition.
    pub partitions: BTreeMap<i32, PartitionAudit>,
}

impl Audit {
    /// Takes in one applied commit of `partition` over `[from, to)` holding `tally`; returns the
    /// mismatch when they do not agree.
    pub fn record(&mut self, partition: i32, from: i64, to: i64, tally: Tally) -> Option<Mismatch> {
        if from == to && tally == Tally::default() {
            return None; // a status-only commit
        }
        let a = self.partitions.entry(partition).or_default();
        match a.ranges.last_mut() {
            Some((_, end)) if *end == from => *end = to,
            _ => a.ranges.push((from, to)),
        }
        a.tally.add(&tally);
        let span = (to - from).max(0) as u64;
        let agrees = tally.records + tally.gaps == span
            && tally.records == tally.trades + tally.dead_lettered;
        if agrees {
            return None;
        }
        let m = Mismatch {
            partition,
            from,
            to,
            tally,
        };
        a.mismatches.push(m.clone());
        Some(m)
    }

    /// Every mismatch of the run.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        self.partitions
            .values()
            .flat_map(|a| a.mismatches.iter().cloned())
            .collect()
    }

    /// Logs one line per partition (the end of a drain).
    pub fn log(&self) {
        for (p, a) in &self.partitions {
            let t = &a.tally;
            let ranges: Vec<String> = a
                .ranges
                .iter()
                .map(|(f, t)| format!("[{f}, {t})"))
                .collect();
            tracing::info!(
                partition = p,
                committed = %ranges.join(" "),
                records = t.records,
                trades = t.trades,
                dead_lettered = t.dead_lettered,
                late = t.late,
                gaps = t.gaps,
                mismatches = a.mismatches.len(),
                "offset audit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(records: u64, dead: u64, gaps: u64) -> Tally {
        Tally {
            records,
            trades: records - dead,
            dead_lettered: dead,
            late: 0,
            gaps,
        }
    }

    #[test]
    fn commits_that_account_for_every_offset_agree() {
        let mut a = Audit::default();
        assert_eq!(a.record(0, 0, 10, tally(10, 2, 0)), None);
        assert_eq!(a.record(0, 10, 15, tally(3, 0, 2)), None, "a counted gap");
        assert_eq!(a.record(0, 15, 15, Tally::default()), None, "status only");
        assert_eq!(
            a.record(0, 40, 50, tally(10, 0, 0)),
            None,
            "after another replica's"
        );
        assert_eq!(a.partitions[&0].ranges, vec![(0, 15), (40, 50)]);
        assert!(a.mismatches().is_empty());
    }

    /// Issue 31's loss as the audit sees it: a partition taken from no offset to 31,766 with one
    /// 20,000-record micro-batch.
    #[test]
    fn a_commit_that_passes_unmerged_records_is_a_mismatch() {
        let mut a = Audit::default();
        let m = a
            .record(1, 0, 31_766, tally(20_000, 0, 0))
            .expect("mismatch");
        assert_eq!((m.partition, m.from, m.to), (1, 0, 31_766));
        assert!(m.to_string().contains("[0, 31766)"), "{m}");
        let mut b = Audit::default();
        let bad_split = Tally {
            trades: 3,
            ..tally(10, 2, 0)
        };
        assert!(
            b.record(0, 0, 10, bad_split).is_some(),
            "records not all accounted"
        );
    }

    #[test]
    fn counts_by_partition_in_runs() {
        let mut raw = RawBatch::with_capacity(8);
        for (p, o) in [(0, 0), (0, 1), (2, 0), (0, 2), (2, 1)] {
            raw.push(p, o, None, b"x");
        }
        let mut t = Tallies::new();
        count_by_partition(&mut t, &raw, 0..raw.len(), |t| &mut t.records);
        count_by_partition(&mut t, &raw, [1usize, 2].into_iter(), |t| &mut t.late);
        assert_eq!(t[&0].records, 3);
        assert_eq!(t[&2].records, 2);
        assert_eq!((t[&0].late, t[&2].late), (1, 1));
    }
}
