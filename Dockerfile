# syntax=docker/dockerfile:1
# kube-oidc-proxy container image: build with the Rust toolchain, run from distroless as a
# non-root user. docs/deploy.md explains the choices.
#
#   docker build -t kube-oidc-proxy:dev .
#
# Build stage: the pinned Cargo.lock (--locked) and the crate's sources only (.dockerignore keeps
# target/, tests and docs out of the context). aws-lc-rs (rustls' crypto) needs a C compiler
# and cmake; the rust image has gcc, cmake is added.
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo.toml declares the bench target, so its file must exist to build.
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin kube-oidc-proxy \
 && cp target/release/kube-oidc-proxy /kube-oidc-proxy

# Runtime stage: glibc + CA certificates, no shell, no package manager. The binary writes no
# files (logs go to stdout/stderr), so the pod runs with readOnlyRootFilesystem: true.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kube-oidc-proxy /usr/local/bin/kube-oidc-proxy
# 65532 is distroless' "nonroot"; numeric so runAsNonRoot can be verified by the kubelet.
USER 65532:65532
# 6443: HTTPS (--secure-port); 8080: probes and /metrics (--readiness-probe-port).
EXPOSE 6443 8080
ENTRYPOINT ["/usr/local/bin/kube-oidc-proxy"]
