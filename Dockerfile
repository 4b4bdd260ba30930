# syntax=docker/dockerfile:1
# tradewind container image: multi-stage (Rust release build -> Debian slim runtime, non-root).
#   docker build -t tradewind:dev .
#   docker run --rm tradewind:dev --help
# Subcommands (args): ingest | run | migrate | produce | simulate | demo.

FROM rust:1.95-slim-bookworm AS build
# librdkafka (bundled by rdkafka, built from source) needs a C toolchain and make; zlib for `libz`;
# OpenSSL headers for TLS and SASL SCRAM (librdkafka) and MySQL over TLS (mysql_async native-tls).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make g++ pkg-config zlib1g-dev libssl-dev perl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tradewind \
 && cp target/release/tradewind /usr/local/bin/tradewind
# Keep line tables out of the runtime image (the release profile has debug = "line-tables-only").
RUN strip /usr/local/bin/tradewind

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tradewind \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin tradewind
COPY --from=build /usr/local/bin/tradewind /usr/local/bin/tradewind
COPY schemas /usr/share/tradewind/schemas
USER 10001:10001
# Metrics, /healthz and /readyz (TRADEWIND_METRICS_ADDR=0.0.0.0:9100 in Kubernetes).
EXPOSE 9100
ENV RUST_LOG=info
# tini forwards SIGTERM so the graceful flush runs, and reaps zombies.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tradewind"]
CMD ["--help"]
