//! Side outputs of a micro-batch: its plan folded into the pending commit, invalid records to the
//! dead-letter topic, too-late trades to the late topic (neither routed twice when records are read
//! again after a refused commit), and the trades behind rows MySQL refuses.

use std::collections::{BTreeSet, HashSet};

use anyhow::Context;
use futures_util::future::join_all;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tradewind_model::{now_ms, Reject, RejectKind};
use tradewind_pipeline::RowOrder;
use tradewind_sink::SinkError;

use super::retry::retry;
use super::Engine;
use crate::audit::{self, Tallies};
use crate::consumer::Polled;
use crate::decode::Decoded;
use crate::raw::RawBatch;
use crate::views::ViewError;

impl Engine {
    /// Plans one batch, routes its side outputs and folds its contributions into the pending commit.
    pub(super) fn fold_batch(
        &mut self,
        rt: &Handle,
        polled: &Polled,
        decoded: &Decoded,
        rejected: &[(usize, Reject)],
        in_batch: &BTreeSet<i32>,
        mut tally: Tallies,
    ) -> anyhow::Result<()> {
        let raw = &polled.raw;
        // Folded again before it is committed: the commit's fold sorts the rows once.
        let plan = self.plan(raw, decoded, &HashSet::new(), RowOrder::Any)?;
        self.route_rejects(rt, raw, rejected)?;
        let fresh: Vec<&(usize, i64, Vec<usize>)> = self.not_routed(raw, &plan.too_late);
        self.route_too_late(rt, raw, &fresh)?;
        let errors = self.view_errors_to_route(raw, &plan.view_errors);
        self.route_view_errors(rt, raw, &errors)?;
        if in_batch.is_empty() {
            return Ok(());
        }
        let late = plan.too_late.iter().map(|(i, _, _)| *i);
        audit::count_by_partition(&mut tally, raw, late, |t| &mut t.late);
        self.pending
            .fold(&self.views, plan, in_batch, &tally, polled.at, now_ms())
    }

    /// The too-late trades of `late` not routed before (records read again after a refused commit).
    pub(super) fn not_routed<'a>(
        &self,
        raw: &RawBatch,
        late: &'a [(usize, i64, Vec<usize>)],
    ) -> Vec<&'a (usize, i64, Vec<usize>)> {
        late.iter()
            .filter(|(i, _, _)| {
                self.routed
                    .get(&raw.partitions[*i])
                    .is_none_or(|&o| raw.offsets[*i] >= o)
            })
            .collect()
    }

    /// The trades of `errors` not routed before (records read again after an undone commit).
    pub(super) fn view_errors_to_route<'a>(
        &self,
        raw: &RawBatch,
        errors: &'a [ViewError],
    ) -> Vec<&'a ViewError> {
        errors
            .iter()
            .filter(|e| {
                self.routed
                    .get(&raw.partitions[e.raw])
                    .is_none_or(|&o| raw.offsets[e.raw] >= o)
            })
            .collect()
    }

    /// Sends the trades a view's SQL failed on to the dead-letter topic, reason `view_error`, one
    /// copy per failing view (awaited: at-least-once). Every other view counted them.
    pub(super) fn route_view_errors(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        errors: &[&ViewError],
    ) -> anyhow::Result<()> {
        let rejects: Vec<(usize, Reject)> = errors
            .iter()
            .map(|e| (e.raw, Reject::new(RejectKind::ViewError, e.message.clone())))
            .collect();
        self.route_rejects(rt, raw, &rejects)?;
        self.summary.view_errors += rejects.len() as u64;
        Ok(())
    }

    /// Sends validator and MySQL rejects to the dead-letter topic (awaited: at-least-once).
    pub(super) fn route_rejects(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        rejects: &[(usize, Reject)],
    ) -> anyhow::Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let topic = &self.args.topic;
        let sends = rejects.iter().map(|(i, r)| {
            self.io
                .metrics
                .rejected
                .with_label_values(&[r.kind.label()])
                .inc();
            let origin = format!("{topic}/{}/{}", raw.partitions[*i], raw.offsets[*i]);
            let dlq = &self.io.dlq;
            async move {
                dlq.send(raw.key(*i), raw.payload(*i), r, "engine", Some(&origin))
                    .await
            }
        });
        for r in rt.block_on(join_all(sends)) {
            r.context("writing to the dead-letter topic")?;
        }
        self.summary.rejected += rejects.len() as u64;
        Ok(())
    }

    /// Sends too-late trades, unchanged, to the late topic (awaited: at-least-once).
    pub(super) fn route_too_late(
        &mut self,
        rt: &Handle,
        raw: &RawBatch,
        late: &[&(usize, i64, Vec<usize>)],
    ) -> anyhow::Result<()> {
        if late.is_empty() {
            return Ok(());
        }
        let topic = &self.args.topic;
        let allowed = self.args.allowed_lateness.as_millis();
        let tables = self.views.tables();
        let sends = late.iter().map(|&&(i, w, ref refused)| {
            let origin = format!("{topic}/{}/{}", raw.partitions[i], raw.offsets[i]);
            let names: Vec<&str> = refused
                .iter()
                .filter_map(|v| tables.get(*v).map(|t| t.name.as_str()))
                .collect();
            let detail = format!(
                "window closed beyond allowed lateness ({allowed} ms) of partition watermark {w} in: {}",
                names.join(", ")
            );
            let late = &self.io.late;
            async move {
                late.send_labelled(
                    raw.key(i),
                    raw.payload(i),
                    "too_late",
                    &detail,
                    "engine",
                    Some(&origin),
                )
                .await
            }
        });
        for r in rt.block_on(join_all(sends)) {
            r.context("writing to the late-trades topic")?;
        }
        self.io
            .metrics
            .late
            .with_label_values(&["routed"])
            .inc_by(late.len() as u64);
        self.summary.too_late += late.len() as u64;
        Ok(())
    }

    /// Finds the trades behind the contribution rows MySQL refuses (probing each view's table),
    /// with the MySQL error as their reason.
    pub(super) fn find_bad_trades(
        &mut self,
        rt: &Handle,
        shutdown: &watch::Receiver<bool>,
        decoded: &Decoded,
        keep: &[arrow_array::BooleanArray],
        batches: &[arrow_array::RecordBatch],
        error: &SinkError,
    ) -> anyhow::Result<Vec<(usize, Reject)>> {
        tracing::warn!(error = %error, "MySQL refused values of this batch; isolating the rows");
        let mut out: Vec<(usize, Reject)> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        for (v, (table, batch)) in self.views.tables().iter().zip(batches).enumerate() {
            let sink = &self.io.sink;
            let Some(bad) = retry(rt, shutdown, &self.io, "probe rows", || {
                sink.find_bad_rows(table, batch)
            })?
            else {
                return Ok(Vec::new());
            };
            for b in bad {
                let reason = Reject::new(
                    RejectKind::Storage,
                    format!("MySQL error {} on `{}`: {}", b.code, table.name, b.message),
                );
                let trades = self
                    .views
                    .trades_of_row(v, batch, b.row, decoded, keep.get(v));
                tracing::warn!(table = %table.name, row = b.row, trades = trades.len(), code = b.code, message = %b.message, "row refused by MySQL; its trades go to the dead-letter topic");
                for i in trades {
                    if seen.insert(i) {
                        out.push((i, reason.clone()));
                    }
                }
            }
        }
        Ok(out)
    }
}
