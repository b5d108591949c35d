# syntax=docker/dockerfile:1
# SecureCart API image: a release build of `securecart` plus the four pinned GraphiQL files it
# serves. Built once by `docker compose build` (the `server` service); the other services run
# the same image.

# 1. The binary. Dependencies are compiled once and kept between builds in BuildKit cache mounts
#    (the cargo registry and target/), so a change to src/ recompiles only this crate.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs CHANGELOG.md ./
COPY src ./src
COPY migrations ./migrations
# Declared bench targets must exist for cargo to read the manifest.
COPY bench ./bench
COPY playground/index.html playground/assets.json ./playground/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --features otlp --bin securecart \
    && cp target/release/securecart /securecart && strip /securecart

# 2. The playground's assets: `npm ci` with the lock file, then only the files assets.json lists
#    (about 1.5 MB, not the 56 MB of node_modules), with Node 24, the active LTS line.
FROM node:24-bookworm-slim AS assets
WORKDIR /playground
COPY playground/package.json playground/package-lock.json playground/assets.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && node -e 'const fs=require("fs"),path=require("path");for(const a of JSON.parse(fs.readFileSync("assets.json"))){const rel=path.join("node_modules",a.package,a.file);fs.mkdirSync(path.dirname(path.join("/out",rel)),{recursive:true});fs.copyFileSync(rel,path.join("/out",rel));}'

# 3. The runtime: Debian slim, a non-root user, a health check on the internal listener.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 securecart \
    && useradd --system --uid 10001 --gid 10001 --home /app securecart
WORKDIR /app
COPY --from=build /securecart /usr/local/bin/securecart
COPY --from=assets /out/node_modules ./playground/node_modules
USER 10001:10001
ENV SECURECART_LISTEN=0.0.0.0:8080 \
    SECURECART_INTERNAL_LISTEN=0.0.0.0:9090 \
    SECURECART_ENV=production \
    SECURECART_PLAYGROUND_DIR=/app/playground
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["securecart"]
CMD ["serve"]
