# SecureCart API image: a release build of `securecart` plus the pinned GraphiQL assets.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs CHANGELOG.md ./
COPY src ./src
COPY migrations ./migrations
# Declared bench targets must exist for cargo to read the manifest.
COPY bench ./bench
COPY playground/index.html playground/assets.json ./playground/
RUN cargo build --release --locked --features otlp --bin securecart && strip target/release/securecart

FROM node:20-bookworm-slim AS assets
WORKDIR /playground
COPY playground/package.json playground/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app securecart
WORKDIR /app
COPY --from=build /src/target/release/securecart /usr/local/bin/securecart
COPY --from=assets /playground/node_modules ./playground/node_modules
USER securecart
ENV SECURECART_LISTEN=0.0.0.0:8080 \
    SECURECART_ENV=production \
    SECURECART_PLAYGROUND_DIR=/app/playground
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["securecart"]
CMD ["serve"]
