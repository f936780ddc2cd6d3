# syntax=docker/dockerfile:1
# Switchboard engine image: a multi-stage cargo build, then a small Debian
# runtime that runs `switchboard serve` as an unprivileged user.
#
#   docker build -t switchboard .
#   docker run --rm -p 127.0.0.1:8080:8080 switchboard
#
# The embedded default configuration is used unless a file is mounted and
# passed with `--config`; SWITCHBOARD__SECTION__KEY variables override it.

# The toolchain the project is built and tested with (Cargo.toml rust-version is the floor).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is
# copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchboard --bin switchboard \
 && install -D -m 0755 target/release/switchboard /out/switchboard

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
 && mkdir -p /var/lib/switchboard/data \
 && chown -R switchboard:switchboard /var/lib/switchboard
COPY --from=build /out/switchboard /usr/local/bin/switchboard
USER switchboard
# Snapshots and the journal go to ./data (the default `snapshot.dir`).
WORKDIR /var/lib/switchboard
ENV SWITCHBOARD__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
