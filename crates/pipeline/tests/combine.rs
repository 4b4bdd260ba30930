//! Folding contribution rows: the contributions of several micro-batches, folded by
//! `ViewExec::combine`, equal the contribution of all their trades at once, for every built-in view
//! and for user views with row filters, FILTER clauses, first/last values and arithmetic. This is
//! what lets the engine commit several micro-batches in one transaction.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::DataType;
use tradewind_pipeline::{Pipeline, RowOrder, ViewExec, ViewInput};

const USER: &str = "
CREATE MATERIALIZED VIEW pair_2m AS
SELECT exchange, base,
       date_bin(INTERVAL '2 minutes', ts) AS window_start,
       count(*) AS n,
       count(*) FILTER (WHERE direction = 'sell') AS sells,
       sum(volume) FILTER (WHERE direction = 'buy') AS buy_volume,
       min(price) AS low,
       first_value(price ORDER BY ts) AS open,
       last_value(price ORDER BY ts) FILTER (WHERE direction = 'buy') AS last_buy,
       sum(price_usd * volume) / sum(volume) AS vwap_usd,
       avg(volume) AS avg_volume
FROM trades
WHERE exchange <> 'kraken'
GROUP BY exchange, base, date_bin(INTERVAL '2 minutes', ts);
";

/// A small deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` trades over five minutes around midnight, a few markets, some marked late; with their ordering keys.
fn trades(n: usize, seed: u64) -> (RecordBatch, ArrayRef, BooleanArray) {
    let mut r = Lcg(seed);
    let pick = |r: &mut Lcg, xs: &[&'static str]| xs[r.next(xs.len() as u64) as usize];
    let mut cols: [Vec<&str>; 4] = Default::default();
    let (mut price, mut volume, mut usd, mut ts, mut ord, mut late) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        cols[0].push(pick(&mut r, &["binance", "kraken", "coinbase"]));
        cols[1].push(pick(&mut r, &["bitcoin", "ethereum", "solana"]));
        cols[2].push(pick(&mut r, &["tether", "usd"]));
        // The first trade a buy on binance, the next five sells: the first micro-batch has a
        // buy in its window, the next ones none (NULL filtered states after a non-NULL batch).
        let direction = match i {
            0 => "buy",
            1..=5 => "sell",
            _ => pick(&mut r, &["buy", "sell"]),
        };
        cols[3].push(direction);
        if i == 0 {
            cols[0][0] = "binance";
        }
        let p = 1.0 + r.next(10_000) as f64 / 7.0;
        price.push(p);
        volume.push(r.next(1_000) as f64 / 3.0);
        usd.push(p * 1.001);
        // 23:58 to 00:03 UTC: across minute, hour and day boundaries.
        let t = 1_704_067_080_000 + r.next(300_000) as i64;
        ts.push(t);
        // Event time, then a unique sequence: no two trades tie.
        ord.push(i128::from(t) * 10_000_000 + i as i128);
        late.push(r.next(10) == 0);
    }
    let s = |v: &Vec<&str>| Arc::new(StringArray::from(v.clone())) as ArrayRef;
    let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let batch = RecordBatch::try_new(
        tradewind_pipeline::trades_schema(),
        vec![
            s(&cols[0]),
            s(&cols[1]),
            s(&cols[2]),
            s(&cols[3]),
            f(price),
            f(volume),
            f(usd),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone("+00:00")),
        ],
    )
    .expect("trades batch");
    let ord = Decimal128Array::from(ord)
        .with_precision_and_scale(38, 0)
        .expect("decimal");
    (batch, Arc::new(ord), BooleanArray::from(late))
}

fn contribution(
    exec: &ViewExec,
    batch: &RecordBatch,
    ord: &ArrayRef,
    late: &BooleanArray,
) -> RecordBatch {
    let input = ViewInput {
        trades: batch.clone(),
        ord: ord.clone(),
    };
    let keep = BooleanArray::from(vec![true; batch.num_rows()]);
    exec.contribute(&input, &keep, late, 0, RowOrder::Keys)
        .expect("contribute")
}

/// Every column but `updated_at` equal; doubles within a relative 1e-9 (summation order differs).
fn assert_same(view: &str, got: &RecordBatch, want: &RecordBatch) {
    assert_eq!(got.num_rows(), want.num_rows(), "{view}: rows");
    assert_eq!(
        got.schema().fields().len(),
        want.schema().fields().len(),
        "{view}: columns"
    );
    for (i, field) in want.schema().fields().iter().enumerate() {
        let name = field.name();
        if name == "updated_at" {
            continue;
        }
        let (g, w) = (got.column(i), want.column(i));
        assert_eq!(got.schema().field(i).name(), name, "{view}: column order");
        if *w.data_type() == DataType::Float64 {
            let (g, w) = (
                g.as_primitive::<Float64Type>(),
                w.as_primitive::<Float64Type>(),
            );
            for r in 0..w.len() {
                assert_eq!(g.is_null(r), w.is_null(r), "{view}.{name} row {r}: null");
                if w.is_valid(r) {
                    let (a, b) = (g.value(r), w.value(r));
                    assert!(
                        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        "{view}.{name} row {r}: {a} vs {b}"
                    );
                }
            }
        } else {
            assert_eq!(g.as_ref(), w.as_ref(), "{view}.{name}");
        }
    }
}

#[test]
fn folded_micro_batches_equal_one_batch_of_all_their_trades() {
    let pipeline = Pipeline::with_user(Some((USER, "user.sql"))).expect("pipeline");
    let (all, ord, late) = trades(3_000, 7);
    for view in &pipeline.views {
        let exec = ViewExec::new(view.clone()).expect("plan");
        let want = contribution(&exec, &all, &ord, &late);
        assert!(
            want.num_rows() > 3,
            "{}: the data must span windows",
            view.name
        );
        // Uneven micro-batches, one of them empty, tiny ones whose windows lack a buy (NULL
        // states where the first batch has none).
        let mut parts = Vec::new();
        let mut at = 0;
        for len in [1usize, 0, 2, 3, 694, 300, 2_000] {
            let b = all.slice(at, len);
            let o = ord.slice(at, len);
            let l = late.slice(at, len);
            parts.push(contribution(&exec, &b, &o, &l));
            at += len;
        }
        assert_eq!(at, all.num_rows());
        let got = exec
            .combine(&parts, 0, RowOrder::Keys)
            .expect("combine")
            .expect("rows");
        assert_same(&view.name, &got, &want);
        // Folding is associative: fold a fold with the rest.
        let first = exec
            .combine(&parts[..5], 0, RowOrder::Keys)
            .expect("combine")
            .expect("rows");
        let again = exec
            .combine(
                &[first, parts[5].clone(), parts[6].clone()],
                0,
                RowOrder::Keys,
            )
            .expect("combine")
            .expect("rows");
        assert_same(&view.name, &again, &want);
    }
}

#[test]
fn folding_nothing_gives_nothing_and_one_batch_is_itself() {
    let pipeline = Pipeline::builtin().expect("pipeline");
    let exec = ViewExec::new(pipeline.views[0].clone()).expect("plan");
    assert!(exec
        .combine(&[], 0, RowOrder::Keys)
        .expect("combine")
        .is_none());
    let (all, ord, late) = trades(50, 3);
    let one = contribution(&exec, &all, &ord, &late);
    let got = exec
        .combine(std::slice::from_ref(&one), 0, RowOrder::Keys)
        .expect("combine")
        .expect("rows");
    assert_eq!(got, one);
}
