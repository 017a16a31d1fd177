# Dockerfile.builder: the pinned builder image that runnerd's builder labels run every step in
# (Rust 1.92.0 + clippy + rustfmt, sqlx-cli, docker CLI + buildx, Node.js 22, git, curl, jq).
# Build from the repository root (build/README.md):
#
#   build/scripts/build-and-push.sh -f build/Dockerfile.builder -t registry.example.com/matric/builder:2025.1
#   docker build -f build/Dockerfile.builder --build-arg BASE=debian:bookworm-slim@sha256:<digest> .
#   docker build -f build/Dockerfile.builder --build-arg OFFLINE=1 --build-arg BASE=<local debian image> .
#
# Tool versions: build/scripts/versions.env (shared with Dockerfile.builder-gpu). No secrets are
# needed: every download is public. Should one ever be (a private crate registry), pass it with a
# BuildKit secret mount (RUN --mount=type=secret,id=...), never as ARG or ENV.

# PLACEHOLDER, not a real digest: build-and-push.sh resolves debian:bookworm-slim to its current
# digest when it sees "sha256:UNPINNED" (build/README.md, "Pinning the base"); a plain
# `docker build` needs --build-arg BASE=... (a digest-pinned reference, or a local image).
ARG BASE=debian:bookworm-slim@sha256:UNPINNED
FROM ${BASE}

# 1 = no network but the distribution mirror: base tools only (build/README.md, "Offline").
ARG OFFLINE=0

ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH

# Layers from the least to the most often changed: distribution packages, the user, then the
# toolchains in versions.env (Rust, then sqlx-cli built with it, Docker, Node).
COPY build/scripts/install-tools.sh /usr/local/lib/runnerd-builder/
RUN /usr/local/lib/runnerd-builder/install-tools.sh apt
COPY build/scripts/versions.env /usr/local/lib/runnerd-builder/
RUN /usr/local/lib/runnerd-builder/install-tools.sh user
RUN /usr/local/lib/runnerd-builder/install-tools.sh rust
RUN /usr/local/lib/runnerd-builder/install-tools.sh sqlx
RUN /usr/local/lib/runnerd-builder/install-tools.sh docker-cli
RUN /usr/local/lib/runnerd-builder/install-tools.sh node
RUN /usr/local/lib/runnerd-builder/install-tools.sh check

LABEL org.opencontainers.image.title="runnerd builder" \
      org.opencontainers.image.description="Pinned CI toolchain for runnerd's matric-builder label" \
      io.runnerd.builder.variant="cpu"

# The default user stays root: runnerd's job containers take the image's user, and `docker:
# socket` labels need the host's docker group, which uid 1000 only gets through GroupAdd
# (build/README.md, "The builder user"). Run steps as builder with `--user builder`.
WORKDIR /home/builder
# tini reaps zombies and forwards signals when the image runs on its own; in job containers
# runnerd replaces the entrypoint with its agent.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
