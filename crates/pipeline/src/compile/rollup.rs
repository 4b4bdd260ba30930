//! Deriving rollups: whether one view can be computed from another view's contribution rows.

use crate::view::View;

/// How view `b` can be computed from view `a`'s contribution rows instead of from the trades: for
/// each of `b`'s states (in order), the index of the `a` state it re-aggregates. `None` unless `b`
/// has the same row filter, a subset of `a`'s keys, a window that is a multiple of `a`'s, and only
/// states `a` also keeps (same aggregate, argument and `FILTER`).
pub fn rollup_of(b: &View, a: &View) -> Option<Vec<usize>> {
    if b.filter != a.filter || b.window_ms % a.window_ms != 0 {
        return None;
    }
    let a_keys: Vec<&str> = a.keys.iter().map(|(_, t)| t.as_str()).collect();
    if !b.keys.iter().all(|(_, t)| a_keys.contains(&t.as_str())) {
        return None;
    }
    b.states
        .iter()
        .map(|s| {
            a.states
                .iter()
                .position(|x| x.kind == s.kind && x.arg == s.arg && x.filter == s.filter)
        })
        .collect()
}
