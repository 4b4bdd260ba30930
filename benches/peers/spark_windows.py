#!/usr/bin/env python3
"""The replaced pipeline's engine: Spark Structured Streaming (PySpark, local[2]) computing the same
1-minute windows as tradewind over the same JSON-lines trades.

File source, not Kafka: this measures Spark's processing cost (parse, watermark, stateful windowed
aggregation), not its Kafka client. The input is split into --batches files and read with
maxFilesPerTrigger=1, so Spark runs that many micro-batches, as a stream would. Per (exchange, base,
quote) and per base: count, volume, notional, vwap, min, max, open, close (USD price; open/close by event
time via min_by/max_by), event-time watermark 5 minutes (as the original job), noop sink in append mode.
Timing covers the streaming queries only (not the JVM start). Prints one JSON line
{system, trades, seconds, cpu_seconds, peak_rss_bytes}.

    benches/peers/.venv/bin/python benches/peers/spark_windows.py trades.jsonl [--batches 10]
"""
import argparse
import os
import shutil
import tempfile

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from _measure import Measure

SCHEMA = StructType([
    StructField("exchange", StringType()), StructField("base", StringType()), StructField("quote", StringType()),
    StructField("direction", StringType()), StructField("price", DoubleType()), StructField("volume", DoubleType()),
    StructField("timestamp", LongType()), StructField("priceUsd", DoubleType()),
])


def split_input(path, parts, out_dir):
    """Split the JSON-lines file into `parts` files of consecutive lines (names sort in order)."""
    with open(path, "rb") as f:
        lines = f.readlines()
    per = (len(lines) + parts - 1) // parts
    for i in range(parts):
        chunk = lines[i * per:(i + 1) * per]
        if chunk:
            with open(os.path.join(out_dir, f"part-{i:05d}.json"), "wb") as o:
                o.writelines(chunk)
    return len(lines)


def aggs():
    return [
        F.count(F.lit(1)).alias("trades"),
        F.sum("volume").alias("volume"),
        F.sum(F.col("priceUsd") * F.col("volume")).alias("notional_usd"),
        (F.sum(F.col("priceUsd") * F.col("volume")) / F.sum("volume")).alias("vwap_usd"),
        F.min("priceUsd").alias("low_usd"),
        F.max("priceUsd").alias("high_usd"),
        F.min_by("priceUsd", "timestamp").alias("open_usd"),
        F.max_by("priceUsd", "timestamp").alias("close_usd"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="2g")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tw-spark-")
    try:
        src = os.path.join(work, "in")
        os.makedirs(src)
        trades = split_input(a.file, a.batches, src)
        spark = (SparkSession.builder.master(a.master).appName("tradewind-peer")
                 .config("spark.driver.memory", a.driver_memory)
                 .config("spark.sql.shuffle.partitions", "2")
                 .config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.sql.streaming.stateStore.providerClass",
                         "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider")
                 .getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        with Measure() as m:
            df = (spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).json(src)
                  .withColumn("ts", F.timestamp_millis("timestamp"))
                  .withWatermark("ts", "5 minutes"))
            market = df.groupBy("exchange", "base", "quote", F.window("ts", "1 minute")).agg(*aggs())
            asset = df.groupBy("base", F.window("ts", "1 minute")).agg(*aggs())
            queries = [
                q.writeStream.format("noop").outputMode("append")
                 .option("checkpointLocation", os.path.join(work, f"ckpt-{name}"))
                 .trigger(availableNow=True).queryName(name).start()
                for name, q in (("market_1m", market), ("asset_1m", asset))
            ]
            for q in queries:
                q.awaitTermination()
            batches = [len(q.recentProgress) for q in queries]
        m.report(f"spark structured streaming {spark.version} {a.master}, file source, noop sink", trades,
                 micro_batches=batches)
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
