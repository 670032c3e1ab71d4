# syntax=docker/dockerfile:1
# The drivercenter image: a build stage whose dependency layer survives source changes,
# and a slim runtime stage with the binary alone, run as an unprivileged user.

FROM rust:1-bookworm AS build
WORKDIR /src
# Extra cargo features of the `drivercenter` package, e.g. `--build-arg FEATURES=otel`.
ARG FEATURES=""

# Dependency layer: the manifests and empty crate roots only, so that the layer (and the
# dependencies compiled in it) is reused until a Cargo.toml or Cargo.lock changes. The
# target directory stays in the layer rather than in a cache mount, so that CI's layer
# cache carries the compiled dependencies between runs; the download cache is a mount.
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY domain/Cargo.toml domain/
COPY store/Cargo.toml store/
COPY projections/Cargo.toml projections/
COPY saga/Cargo.toml saga/
COPY api/Cargo.toml api/
COPY notifier/Cargo.toml notifier/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    for crate in domain store projections saga api notifier; do \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
 && echo 'fn main() {}' > api/src/main.rs \
 && mkdir -p store/migrations/sqlite store/migrations/postgres \
 && cargo build --release --locked -p drivercenter ${FEATURES:+--features "$FEATURES"} \
 && rm -rf domain/src store/src projections/src saga/src api/src notifier/src

# The sources; the migrations are embedded into the binary at compile time. The stub
# roots were newer than the copied sources, hence the touch before the real build.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    touch domain/src/lib.rs store/src/lib.rs projections/src/lib.rs saga/src/lib.rs \
          notifier/src/lib.rs api/src/lib.rs api/src/main.rs \
 && cargo build --release --locked -p drivercenter ${FEATURES:+--features "$FEATURES"} \
 && install -m 0755 target/release/drivercenter /usr/local/bin/drivercenter

FROM debian:bookworm-slim AS runtime
# ca-certificates for the notifier's TLS calls; curl for the container health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 drivercenter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/drivercenter --create-home \
      --shell /usr/sbin/nologin drivercenter
COPY --from=build /usr/local/bin/drivercenter /usr/local/bin/drivercenter
# Numeric ids, so that Kubernetes' runAsNonRoot can verify the user without a passwd lookup.
USER 10001:10001
WORKDIR /var/lib/drivercenter
ENV DRIVERCENTER_BIND=0.0.0.0:8088 \
    DRIVERCENTER_LOG_FORMAT=json
EXPOSE 8088
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8088/healthz"]
ENTRYPOINT ["drivercenter"]
CMD ["serve"]
