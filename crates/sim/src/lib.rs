//! tradewind-sim: a CoinCap-compatible websocket market simulator and capture replayer.
//!
//! * [`market`]: a deterministic, seeded market generator (own PRNG, so a seed's byte stream never
//!   changes): 120+ real CoinCap asset ids, heavy-tailed activity, several quotes per base
//!   including crypto-quoted pairs, several exchanges, jitter and late trades.
//! * [`price`]: reference prices as functions of event time at each asset's annualised
//!   volatility (stablecoins pegged), shared by every stream of one seed.
//! * [`server`]: the websocket server behind `tradewind simulate`: `/trades/{exchange}` and
//!   `/prices?assets=...` exactly as CoinCap's v2 socket framed them, paced from 1 to hundreds of
//!   thousands of trades per second with bursts, `--replay` of JSON-lines captures, a replay log of
//!   every frame sent, and fault injection (malformed frames, abrupt close, stall, `Unauthorized`).
//! * [`SimulateConfig`] / [`run`]: the `tradewind simulate` command (the binary maps its flags
//!   onto the config).

#![warn(missing_docs)]

pub mod assets;
mod command;
pub mod market;
pub mod price;
pub mod rng;
pub mod server;

pub use command::{generate_file, run, SimulateConfig};
pub use market::{generate, write_jsonl, LogicalClock, Market, MarketConfig, PriceSubscription};
pub use server::{serve, Burst, Faults, SimConfig, SimMetrics, MALFORMED_ROTATION};
