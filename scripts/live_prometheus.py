#!/usr/bin/env python3
"""Live monitoring test: a real Prometheus scrapes a running tradewind pipeline with the project's alert
rules loaded. Started by scripts/live_prometheus.sh (which installs Prometheus and builds the binary).

Pipeline (separate processes, as in Kubernetes): `tradewind simulate` -> `tradewind ingest` -> Kafka
(a private tansu broker with --tansu, else --brokers) -> `tradewind run` -> MariaDB, the engine connecting as a DML-only
MySQL user (as deploy/ does) through a TCP relay this script can cut. Prometheus scrapes ingest as job
`tradewind-ingest` and the engine as job `tradewind-engine`, both with namespace="live", like the
PodMonitor does, every 2 s, and evaluates the rules of deploy/base/monitoring/prometheusrule.yaml.

Asserts, in order:
  1. every query of grafana/tradewind.json returns data;
  2. no alert is pending or firing while the pipeline is healthy;
  3. the SQL queries of grafana/data-quality.json run against the pipeline's own MySQL rows;
  4. a second engine joins the group: after the rebalance every partition's lag is reported by exactly
     one engine (a revoked partition's series is removed, so the dashboard's sum counts it once);
  5. MySQL cut (relay closed): TradewindSinkErrors fires at once, TradewindEngineNotReady turns pending;
  6. ingest stopped: TradewindIngestDown turns pending (namespace label kept);
  7. both of those fire once their `for: 2m` has passed.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_quality_sql  # noqa: E402  (same directory: Grafana macro expansion)


def log(msg):
    print(f"[live-prometheus] {msg}", flush=True)


class Relay:
    """A TCP relay from 127.0.0.1:<port> to a target; `cut()` closes the listener and every connection,
    so the engine sees MySQL vanish exactly as on a network partition."""

    def __init__(self, port, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            self.closed = True
            self.listener.close()
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


def mysql(sql, database=None):
    cmd = ["mysql", "-h127.0.0.1", "-P3306", "-uroot", "--batch", "--skip-column-names",
           "-e", f"SET time_zone = '+00:00'; {sql}"]
    if database:
        cmd.insert(1, database)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def prom_query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def wait_for(what, fn, timeout, interval=2.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # a target not up yet, a query before the first scrape
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last})")


def dashboard_queries(path):
    with open(path) as f:
        d = json.load(f)
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels") or [])
            for t in p.get("targets") or []:
                if t.get("expr"):
                    out.append((p.get("title"), t["expr"]))

    walk(d.get("panels") or [])
    return out


def expand(expr):
    """Grafana's variables as Grafana would expand them for an `All` selection and a 2 s scrape."""
    return (
        expr.replace('=~"$job"', '=~".+"')
        .replace('=~"$namespace"', '=~"live"')
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "10s")
        .replace("$__range", "5m")
    )


def alerts(base, state=None):
    sel = f'{{alertstate="{state}"}}' if state else ""
    return {(a["metric"]["alertname"], a["metric"]["alertstate"]) for a in prom_query(base, f"ALERTS{sel}")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rules", required=True, help="plain Prometheus rule file")
    ap.add_argument("--dashboard", action="append",
                    help="dashboard whose Prometheus queries must return data (repeatable)")
    ap.add_argument("--sql-dashboard", default="grafana/data-quality.json",
                    help="dashboard whose MySQL queries must run on the pipeline's rows")
    ap.add_argument("--brokers", default=os.environ.get("TRADEWIND_BROKERS", "127.0.0.1:19092"),
                    help="Kafka brokers to use when --tansu is not given")
    ap.add_argument("--tansu", help="tansu binary: run a private broker for this test (nothing else can "
                                    "restart it or reuse its topics), instead of --brokers")
    ap.add_argument("--base-port", type=int, default=19300)
    args = ap.parse_args()
    args.dashboard = args.dashboard or ["grafana/tradewind.json", "grafana/data-quality.json"]

    p = args.base_port
    ports = {"sim": p + 1, "ingest": p + 2, "engine": p + 3, "relay": p + 4, "prom": p + 5,
             "engine2": p + 7, "broker": p + 8}
    for name, port in ports.items():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} ({name}) is in use; pass --base-port")

    run_id = f"{os.getpid()}"
    db = f"tw_live_prom_{run_id}"
    engine_user = f"tw_live_eng_{run_id}"
    engine_pw = os.urandom(8).hex()
    topic = f"live-prom-{run_id}"
    work = tempfile.mkdtemp(prefix="tw-live-prom-")
    procs = {}
    relay = None

    def start(name, argv, env_extra=None):
        env = dict(os.environ)
        env.update(env_extra or {})
        logf = open(os.path.join(work, f"{name}.log"), "w")
        procs[name] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env)
        log(f"started {name} (pid {procs[name].pid})")

    def stop(name):
        proc = procs.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    failed = False
    try:
        # Scratch database: schema by the owner (the init container's job), rows by a DML-only user.
        mysql(f"DROP DATABASE IF EXISTS `{db}`")
        subprocess.run(
            [args.binary, "migrate", "--mysql-url", f"mysql://root@127.0.0.1:3306/{db}"],
            check=True, capture_output=True,
        )
        mysql(
            f"CREATE USER '{engine_user}'@'127.0.0.1' IDENTIFIED BY '{engine_pw}';"
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* TO '{engine_user}'@'127.0.0.1';"
        )
        relay = Relay(ports["relay"], ("127.0.0.1", 3306))

        if args.tansu:
            broker_dir = os.path.join(work, "tansu")  # tansu reads a .env from its cwd: an empty one
            os.mkdir(broker_dir)
            url = f"tcp://127.0.0.1:{ports['broker']}"
            logf = open(os.path.join(work, "tansu.log"), "w")
            procs["tansu"] = subprocess.Popen(
                [args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                cwd=broker_dir, stdout=logf, stderr=subprocess.STDOUT)
            wait_for("private tansu broker", lambda: socket.create_connection(
                ("127.0.0.1", ports["broker"]), timeout=1).close() or True, 30, 0.2)
            args.brokers = f"127.0.0.1:{ports['broker']}"
            log(f"private tansu broker on {args.brokers}")

        common = {
            "TRADEWIND_BROKERS": args.brokers,
            "TRADEWIND_TOPIC": topic,
            "TRADEWIND_DLQ_TOPIC": f"{topic}.dlq",
            "TRADEWIND_LATE_TOPIC": f"{topic}.late",
            "RUST_LOG": "info",
        }
        # A few late trades (up to 20 s behind) so the late-records and corrections panels have data.
        start("simulate", [args.binary, "simulate", "--listen", f"127.0.0.1:{ports['sim']}",
                           "--rate", "400", "--markets", "40", "--late-fraction", "0.01",
                           "--late-max-ms", "20000",
                           "--metrics-addr", f"127.0.0.1:{p + 6}"], common)
        start("ingest", [args.binary, "ingest", "--source", f"ws://127.0.0.1:{ports['sim']}/trades/ALL",
                         "--partitions", "3", "--metrics-addr", f"127.0.0.1:{ports['ingest']}"], common)
        def start_engine(name):
            start(name, [args.binary, "run", "--group", f"live-prom-{run_id}",
                         "--mysql-url",
                         f"mysql://{engine_user}:{engine_pw}@127.0.0.1:{ports['relay']}/{db}",
                         "--metrics-addr", f"127.0.0.1:{ports[name]}"],
                  common)

        start_engine("engine")

        config = os.path.join(work, "prometheus.yml")
        rules = os.path.join(work, "tradewind.rules.yml")
        shutil.copy(args.rules, rules)
        with open(config, "w") as f:
            f.write(
                "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
                "rule_files: [tradewind.rules.yml]\n"
                "scrape_configs:\n"
                "  - job_name: tradewind-ingest\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{ports['ingest']}'], labels: {{namespace: live}}}}]\n"
                "  - job_name: tradewind-engine\n"
                f"    static_configs: [{{targets: ['127.0.0.1:{ports['engine']}', '127.0.0.1:{ports['engine2']}'],"
                " labels: {namespace: live}}]\n"
            )
        start("prometheus", ["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                             f"--web.listen-address=127.0.0.1:{ports['prom']}"])
        base = f"http://127.0.0.1:{ports['prom']}"

        # Loaded rules: every alert of the rule file is known to this Prometheus.
        def loaded():
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as r:
                groups = json.load(r)["data"]["groups"]
            return [rule["name"] for g in groups for rule in g["rules"]]

        names = wait_for("rules loaded", loaded, 60)
        log(f"{len(names)} alert rules loaded")

        wait_for("ingest and engine up", lambda: len(prom_query(base, "up == 1")) == 2, 90)
        wait_for("engine ready", lambda: prom_query(base, "tradewind_engine_ready == 1"), 120)
        wait_for("rows written", lambda: prom_query(base, "sum(tradewind_engine_rows_written_total) > 0"), 120)
        rows = int(mysql("SELECT COUNT(*) FROM market_1m", db).strip())
        log(f"engine ready, {rows} market_1m rows in MySQL (written by the DML-only user)")
        if rows == 0:
            raise AssertionError("no rows in market_1m")
        time.sleep(35)  # more than a 30 s rate window of samples for every panel

        # 1. every dashboard query returns data
        queries = [q for d in args.dashboard for q in dashboard_queries(d)]
        empty = [(t, e) for t, e in queries if not prom_query(base, expand(e))]
        for t, e in empty:
            log(f"NO DATA: panel {t!r}: {e}")
        if empty:
            raise AssertionError(f"{len(empty)} of {len(queries)} dashboard queries return no data")
        log(f"all {len(queries)} dashboard queries return data")

        # 2. nothing pending or firing while healthy
        active = alerts(base)
        if active:
            raise AssertionError(f"alerts active on a healthy pipeline: {sorted(active)}")
        log("no alert pending or firing on the healthy pipeline")

        # 3. the data-quality SQL on the engine's own rows
        with open(args.sql_dashboard) as f:
            sql_targets = [(pn["title"], t) for pn in json.load(f)["panels"]
                           for t in pn.get("targets", []) if "rawSql" in t]
        now = int(time.time())
        for title, t in sql_targets:
            out = mysql(check_quality_sql.expand(t["rawSql"], now - 3600, now + 60), db)
            if title == "Rollup rows that disagree: details":
                # Healthy means empty: the engine's hourly and daily rollups agree with its minutes.
                if out.strip():
                    raise AssertionError(f"rollups disagree with asset_1m on live data:\n{out}")
                continue
            if not out.strip() and title != "Most corrected rows":  # that one needs a correction
                raise AssertionError(f"data-quality panel {title!r} returns no row on live data")
        log(f"all {len(sql_targets)} data-quality SQL queries run on the live rows")

        # 4. a second replica joins: each partition's lag is reported by one engine only
        start_engine("engine2")

        def split_cleanly():
            per_instance = prom_query(base, "count by (instance) (tradewind_engine_consumer_lag)")
            doubled = prom_query(base, "count by (partition) (tradewind_engine_consumer_lag) > 1")
            parts = prom_query(base, "count(count by (partition) (tradewind_engine_consumer_lag))")
            return len(per_instance) == 2 and not doubled and parts and parts[0]["value"][1] == "3"

        try:
            wait_for("3 partitions split over 2 engines, each reported once", split_cleanly, 120)
        except AssertionError:
            series = prom_query(base, "tradewind_engine_consumer_lag")
            log("lag series: " + str(sorted((x["metric"].get("instance"), x["metric"].get("partition"))
                                             for x in series)))
            raise
        time.sleep(6)  # a few more scrapes: the split must hold
        if not split_cleanly():
            raise AssertionError("a partition's lag is reported by two engines after the rebalance")
        log("after the rebalance each of the 3 partitions' lag is reported by exactly one of 2 engines")

        # 5. MySQL cut
        relay.cut()
        log("MySQL cut (relay closed)")
        wait_for("TradewindSinkErrors firing",
                 lambda: ("TradewindSinkErrors", "firing") in alerts(base), 120)
        log("TradewindSinkErrors firing")
        wait_for("TradewindEngineNotReady active",
                 lambda: {a for a in alerts(base) if a[0] == "TradewindEngineNotReady"}, 60)
        log("TradewindEngineNotReady active: " + str(sorted(alerts(base))))

        # 6. ingest stopped
        stop("ingest")
        log("ingest stopped")
        wait_for("TradewindIngestDown active",
                 lambda: {a for a in alerts(base) if a[0] == "TradewindIngestDown"}, 60)
        firing_ns = prom_query(base, 'ALERTS{alertname="TradewindIngestDown"}')
        if firing_ns[0]["metric"].get("namespace") != "live":
            raise AssertionError(f"TradewindIngestDown without the namespace label: {firing_ns}")
        log("TradewindIngestDown active for namespace live: " + str(sorted(alerts(base))))

        # 7. the `for: 2m` alerts fire
        for name in ("TradewindEngineNotReady", "TradewindIngestDown"):
            wait_for(f"{name} firing", lambda n=name: (n, "firing") in alerts(base), 200, 5)
            log(f"{name} firing")
    except Exception as e:
        failed = True
        log(f"FAILED: {e}")
        for name in procs:
            path = os.path.join(work, f"{name}.log")
            with open(path) as f:
                tail = f.readlines()[-15:]
            print(f"---- {name}.log (tail) ----\n" + "".join(tail), flush=True)
    finally:
        for name in reversed(list(procs)):  # the broker last
            stop(name)
        if relay:
            relay.cut()
        try:
            mysql(f"DROP USER IF EXISTS '{engine_user}'@'127.0.0.1'")
            mysql(f"DROP DATABASE IF EXISTS `{db}`")
        except subprocess.CalledProcessError as e:
            log(f"cleanup: {e}")
        shutil.rmtree(work, ignore_errors=True)
    log("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
