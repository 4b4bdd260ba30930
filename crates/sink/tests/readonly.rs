//! The read-only dashboard user against the real MariaDB at 127.0.0.1:3306 (root, no password):
//! it reads every view, cannot read the tables or write anything, and a second run rotates its
//! password. Works in its own database and account, dropped at the end.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tradewind_sink::{ensure_readonly_user, MySqlSink, Secret};

async fn connect_as(user: &str, password: &str, db: &str) -> Result<Conn, mysql_async::Error> {
    let opts =
        Opts::from_url(&format!("mysql://{user}:{password}@127.0.0.1:3306/{db}")).expect("url");
    Conn::new(opts).await
}

/// The server error code of a failed statement (0 when it is not a server error).
fn code<T>(r: Result<T, mysql_async::Error>) -> u16 {
    match r {
        Err(mysql_async::Error::Server(e)) => e.code,
        Err(_) => 0,
        Ok(_) => panic!("statement succeeded, expected a privilege error"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_user_reads_views_only_and_rotates_its_password() {
    let pid = std::process::id();
    let db = format!("tw_test_ro_{pid}");
    let user = format!("tw_ro_{pid}");
    let sink = MySqlSink::connect(&format!("mysql://root@127.0.0.1:3306/{db}"))
        .await
        .expect("connect");
    sink.migrate().await.expect("migrate");
    let mut root = sink.pool().get_conn().await.expect("root conn");
    root.query_drop(
        "INSERT INTO asset_1m (base, window_start, window_end, trades, volume, notional_usd, vwap_usd, is_final) \
         VALUES ('bitcoin', '2026-01-01 00:00:00', '2026-01-01 00:01:00', 3, 1.5, 150000, 100000, 1)",
    )
    .await
    .expect("insert");

    // An awkward password: quotes and backslashes must be escaped, not interpreted.
    let first = Secret::new(r"p'w\d x");
    let views = ensure_readonly_user(sink.pool(), &user, "%", &first)
        .await
        .expect("create user");
    for v in [
        "coincap_analysis",
        "v_asset_minute",
        "v_market_minute",
        "v_tableau_asset_minute",
    ] {
        assert!(views.iter().any(|x| x == v), "{v} granted: {views:?}");
    }

    let pw = "p%27w%5Cd%20x"; // URL-encoded `p'w\d x`
    let mut ro = connect_as(&user, pw, &db).await.expect("read-only login");
    let n: Option<i64> = ro
        .query_first("SELECT COUNT(*) FROM v_tableau_asset_minute WHERE is_last_closed = 1")
        .await
        .expect("select from the Tableau view");
    assert_eq!(n, Some(1));
    let n: Option<i64> = ro
        .query_first("SELECT COUNT(*) FROM coincap_analysis")
        .await
        .expect("select from coincap_analysis");
    assert_eq!(n, Some(1));
    // Tables, bookkeeping and writes are refused (1142: command denied for this table).
    assert_eq!(code(ro.query_drop("SELECT * FROM asset_1m").await), 1142);
    assert_eq!(code(ro.query_drop("SELECT * FROM tw_offsets").await), 1142);
    assert_eq!(
        code(ro.query_drop("DELETE FROM asset_1m").await),
        1142,
        "no DELETE"
    );
    assert_eq!(
        code(ro.query_drop("UPDATE v_asset_minute SET trades = 0").await),
        1142,
        "no UPDATE through a view"
    );
    drop(ro);

    // Run again with a new password: the old one stops working, the new one works.
    ensure_readonly_user(sink.pool(), &user, "%", &Secret::new("second-pw"))
        .await
        .expect("rotate");
    assert!(
        connect_as(&user, pw, &db).await.is_err(),
        "old password refused"
    );
    connect_as(&user, "second-pw", &db)
        .await
        .expect("new password works");

    // Names that are not plain account names are refused before reaching the server.
    assert!(ensure_readonly_user(sink.pool(), "x'y", "%", &first)
        .await
        .is_err());

    root.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .expect("drop user");
    root.query_drop(format!("DROP DATABASE `{db}`"))
        .await
        .expect("drop db");
    drop(root);
    sink.disconnect().await.expect("disconnect");
}
