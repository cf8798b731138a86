# syntax=docker/dockerfile:1
#
# llm-gateway container image.
#
#   docker build -t llm-gateway:latest .
#   docker run --rm -p 8080:8080 -e OPENAI_API_KEY -e GEMINI_API_KEY llm-gateway:latest
#
# Two stages: a Rust toolchain builds a release binary, and a distroless runtime
# (glibc, libgcc_s, CA certificates, no shell, no package manager) runs it as a
# non-root user. The builder is Debian 12 (bookworm) because the runtime is
# distroless cc-debian12: the binary must not need a newer glibc than it finds there.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
# The minor version matches the toolchain the project is developed and tested
# with; patch releases come in with a rebuild.
FROM rust:1.95-bookworm AS builder

# cmake builds the C parts of pingora's dependencies; gcc and pkg-config are
# already in the rust image. Package versions are not pinned because Debian
# replaces them with security updates (a pinned version disappears from the
# archive and breaks the build); the base image tag is what is pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependency layer: with only the manifests and dummy sources, `cargo build`
# compiles every dependency (the slow part, pingora included). This layer is
# reused until Cargo.toml or Cargo.lock change, so editing src/ rebuilds only
# the crate itself. benches/ comes along because a `[[bench]]` declared in
# Cargo.toml must exist for the manifest to load; it is not compiled here. The
# workspace's other member, the test upstream in mock/, must load too: its
# manifest is copied and its binary stubbed (and kept: the image never builds it).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY mock/Cargo.toml ./mock/
RUN mkdir -p src mock/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > mock/src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin llm-gateway \
    && rm -rf src

# The crate itself. Its own fingerprints are removed so cargo cannot mistake the
# dummy build for an up-to-date one (COPY keeps the sources' modification times,
# which can be older than the dummy artifacts).
COPY conf ./conf
COPY src ./src
RUN rm -rf target/release/.fingerprint/llm-gateway-* \
    && cargo build --release --locked --bin llm-gateway \
    && ./target/release/llm-gateway --check --config conf/gateway.yaml > /dev/null

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
# The binary links only libc, libm and libgcc_s (TLS is rustls), which is what
# distroless "cc" provides; ":nonroot" runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="llm-gateway" \
      org.opencontainers.image.description="LLM API gateway (OpenAI and Gemini) built on Cloudflare Pingora" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /build/target/release/llm-gateway /usr/local/bin/llm-gateway
# The default config (the production file from conf/). Deployments replace the
# whole directory: docker compose mounts ./config here, Kubernetes a ConfigMap.
COPY --from=builder /build/conf/gateway.yaml /app/config/gateway.yaml

WORKDIR /app
ENV GATEWAY_CONFIG=/app/config/gateway.yaml

# Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
USER 65532:65532

EXPOSE 8080

# No curl or shell in distroless: the binary probes itself. The address is the
# default listener (server.port 8080); change it too if you change the port.
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/llm-gateway", "--health-probe", "http://127.0.0.1:8080/health/live"]

# SIGTERM starts a graceful drain: the listener closes, in-flight requests and
# streams finish within the grace period (30 s by default), then exit 0.
# `docker stop` waits only 10 s by default: use `docker stop -t 40` (compose
# files here set stop_grace_period).
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/llm-gateway"]
