"""Wall time, CPU seconds and peak RSS of this process and all its descendants (e.g. Spark's JVM).

A sampling thread (every 100 ms) sums RSS over the process tree (peak kept) and remembers each
process's latest CPU time, so CPU used by children that exit before the end is still counted.
"""
import json
import threading
import time

import psutil


class Measure:
    """Context manager: `with Measure() as m: ...; m.result()`."""

    def __init__(self, interval=0.1):
        self.interval = interval
        self.proc = psutil.Process()
        self.cpu = {}
        self.peak_rss = 0
        self._stop = threading.Event()

    def _sample(self):
        procs = [self.proc]
        try:
            procs += self.proc.children(recursive=True)
        except psutil.Error:
            pass
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    self.cpu[(p.pid, p.create_time())] = t.user + t.system
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self.cpu0 = sum(self.cpu.values())
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self._sample()
        self._stop.set()
        self._thread.join()
        self.cpu_seconds = sum(self.cpu.values()) - self.cpu0
        return False

    def report(self, system, trades, **extra):
        """Print the one JSON line the bench harness reads."""
        line = {"system": system, "trades": trades, "seconds": round(self.seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3), "peak_rss_bytes": self.peak_rss,
                "trades_per_s": round(trades / self.seconds) if self.seconds > 0 else None}
        line.update(extra)
        print(json.dumps(line), flush=True)
