# Build stage: dependencies first, so that a source change does not rebuild them.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY domain/Cargo.toml domain/
COPY store/Cargo.toml store/
COPY projections/Cargo.toml projections/
COPY saga/Cargo.toml saga/
COPY api/Cargo.toml api/
RUN for crate in domain store projections saga; do mkdir -p $crate/src && touch $crate/src/lib.rs; done \
 && mkdir -p api/src && echo 'fn main() {}' > api/src/main.rs && touch api/src/lib.rs \
 && mkdir -p store/migrations/sqlite store/migrations/postgres \
 && cargo build --release --locked -p drivercenter \
 && rm -rf domain/src store/src projections/src saga/src api/src
COPY . .
RUN touch */src/lib.rs api/src/main.rs && cargo build --release --locked -p drivercenter

# Runtime stage: the binary alone, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/drivercenter --create-home drivercenter
COPY --from=build /src/target/release/drivercenter /usr/local/bin/drivercenter
USER drivercenter
WORKDIR /var/lib/drivercenter
ENV DRIVERCENTER_BIND=0.0.0.0:8088 DRIVERCENTER_LOG_FORMAT=json
EXPOSE 8088
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8088/healthz || exit 1
ENTRYPOINT ["drivercenter"]
CMD ["serve"]
