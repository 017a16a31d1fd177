#!/bin/sh
# install-tools.sh: installs the builder toolchain inside an image build, one step per call, so
# that each Dockerfile RUN is its own cache layer. Shared by Dockerfile.builder (Debian) and
# Dockerfile.builder-gpu (Ubuntu, CUDA base): the versions live in versions.env beside it.
#
#   install-tools.sh STEP...      STEP: apt user rust sqlx docker-cli node check
#
# OFFLINE=1 (a build argument, so in the environment of every RUN) turns off each step that
# needs the internet (rust, sqlx, docker-cli, node and apt's build packages); the distribution's
# package mirror is still used for the base tools (git, jq, curl, tini, ca-certificates).
# Runs as root, under /bin/sh (dash on Debian and Ubuntu). No credentials are read or written.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
VERSIONS=${VERSIONS:-$here/versions.env}
RUSTUP_HOME=${RUSTUP_HOME:-/usr/local/rustup}
CARGO_HOME=${CARGO_HOME:-/usr/local/cargo}
STAMP_DIR=/usr/local/share/runnerd-builder
export RUSTUP_HOME CARGO_HOME DEBIAN_FRONTEND=noninteractive

# Tools every variant has; build packages only the online variant needs.
BASE_PACKAGES="ca-certificates curl git jq tini"
BUILD_PACKAGES="gcc libc6-dev make pkg-config libssl-dev xz-utils gpg openssh-client unzip
procps less"

say() { printf 'install-tools: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

offline() {
    case "${OFFLINE:-0}" in
    1 | true | yes) return 0 ;;
    0 | false | no | '') return 1 ;;
    *) die "OFFLINE must be 0 or 1, not '$OFFLINE'" ;;
    esac
}

load_versions() {
    [ -r "$VERSIONS" ] || die "$VERSIONS missing (COPY build/scripts/versions.env first)"
    # shellcheck disable=SC1090
    . "$VERSIONS"
}

apt_install() {
    # --force-unsafe-io: no fsync per file; the layer is written once at the end anyway.
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io "$@"
}

apt_clean() {
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt/* \
        /var/log/dpkg.log /tmp/* 2>/dev/null || true
}

# The machine's architecture in the spelling of Rust's target triples and of Node's tarballs.
rust_arch() {
    case "$(uname -m)" in
    x86_64 | amd64) echo x86_64 ;;
    aarch64 | arm64) echo aarch64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
    esac
}

node_arch() {
    case "$(rust_arch)" in
    x86_64) echo x64 ;;
    aarch64) echo arm64 ;;
    esac
}

# Downloads URL to FILE, failing on HTTP errors; retries transient failures.
fetch() {
    curl -fsSL --proto '=https' --tlsv1.2 --retry 3 --retry-connrefused -o "$2" "$1" ||
        die "download failed: $1"
}

step_apt() {
    pkgs=$BASE_PACKAGES
    offline || pkgs="$pkgs $BUILD_PACKAGES"
    say "apt: $(echo $pkgs)"
    apt-get update -q || die "apt-get update failed (is the distribution mirror reachable?)"
    # shellcheck disable=SC2086
    apt_install $pkgs
    apt_clean
}

step_user() {
    load_versions
    name=$BUILDER_USER uid=$BUILDER_UID
    # Ubuntu 24.04 images (the CUDA base) ship user and group "ubuntu" with id 1000.
    other=$(getent passwd "$uid" | cut -d: -f1 || true)
    if [ -n "$other" ] && [ "$other" != "$name" ]; then
        say "user: removing $other (uid $uid) to make room for $name"
        userdel --remove "$other" 2>/dev/null || userdel "$other"
    fi
    other=$(getent group "$uid" | cut -d: -f1 || true)
    if [ -n "$other" ] && [ "$other" != "$name" ]; then
        groupdel "$other"
    fi
    getent group "$name" >/dev/null || groupadd --gid "$uid" "$name"
    getent passwd "$name" >/dev/null ||
        useradd --uid "$uid" --gid "$uid" --create-home --shell /bin/bash "$name"
    [ "$(id -u "$name")" = "$uid" ] || die "user $name does not have uid $uid"
}

step_rust() {
    if offline; then say "rust: skipped (OFFLINE=1)"; return 0; fi
    load_versions
    triple="$(rust_arch)-unknown-linux-gnu"
    url="https://static.rust-lang.org/rustup/archive/$RUSTUP_VERSION/$triple/rustup-init"
    case "$triple" in
    x86_64-*) want=$RUSTUP_INIT_SHA256_X86_64 ;;
    *) want=$RUSTUP_INIT_SHA256_AARCH64 ;;
    esac
    tmp=$(mktemp -d)
    fetch "$url" "$tmp/rustup-init"
    if [ -z "$want" ]; then
        fetch "$url.sha256" "$tmp/rustup-init.sha256"
        want=$(cut -d' ' -f1 "$tmp/rustup-init.sha256")
    fi
    echo "$want  $tmp/rustup-init" | sha256sum -c - >/dev/null || die "rustup-init: sha256 mismatch"
    chmod +x "$tmp/rustup-init"
    "$tmp/rustup-init" -y --no-modify-path --profile minimal \
        --default-toolchain "$RUST_VERSION" -c clippy -c rustfmt
    rm -rf "$tmp" "$RUSTUP_HOME/downloads" "$RUSTUP_HOME/tmp"
    # Steps may run as root or as the builder user; both build with the same toolchain.
    chmod -R a+w "$RUSTUP_HOME" "$CARGO_HOME"
    "$CARGO_HOME/bin/rustc" --version
}

step_sqlx() {
    if offline; then say "sqlx: skipped (OFFLINE=1)"; return 0; fi
    load_versions
    "$CARGO_HOME/bin/cargo" install --locked --version "=$SQLX_CLI_VERSION" sqlx-cli
    # The registry index and sources are a cache, not part of the tool.
    rm -rf "$CARGO_HOME/registry" "$CARGO_HOME/git" /tmp/cargo-install*
    chmod -R a+w "$CARGO_HOME"
    "$CARGO_HOME/bin/sqlx" --version
}

step_docker_cli() {
    if offline; then say "docker-cli: skipped (OFFLINE=1)"; return 0; fi
    load_versions
    # shellcheck disable=SC1091
    . /etc/os-release
    case "$ID" in
    debian | ubuntu) ;;
    *) die "docker-cli: no Docker apt repository for '$ID'" ;;
    esac
    key=/etc/apt/keyrings/docker.asc
    install -d -m 0755 /etc/apt/keyrings
    fetch "https://download.docker.com/linux/$ID/gpg" "$key"
    chmod 0644 "$key"
    fpr=$(gpg --show-keys --with-colons "$key" 2>/dev/null | awk -F: '/^fpr:/ {print $10; exit}')
    [ "$fpr" = "$DOCKER_APT_KEY_FINGERPRINT" ] ||
        die "docker-cli: key fingerprint '$fpr', expected $DOCKER_APT_KEY_FINGERPRINT"
    echo "deb [arch=$(dpkg --print-architecture) signed-by=$key]" \
        "https://download.docker.com/linux/$ID $VERSION_CODENAME stable" \
        >/etc/apt/sources.list.d/docker.list
    suffix="-1~$ID.$VERSION_ID~$VERSION_CODENAME"
    apt-get update -q
    apt_install "docker-ce-cli=5:$DOCKER_CLI_VERSION$suffix" \
        "docker-buildx-plugin=$DOCKER_BUILDX_VERSION$suffix"
    apt_clean
    docker --version
}

step_node() {
    if offline; then say "node: skipped (OFFLINE=1)"; return 0; fi
    load_versions
    base="node-v$NODE_VERSION-linux-$(node_arch)"
    url="https://nodejs.org/dist/v$NODE_VERSION"
    tmp=$(mktemp -d)
    fetch "$url/$base.tar.xz" "$tmp/$base.tar.xz"
    fetch "$url/SHASUMS256.txt" "$tmp/SHASUMS256.txt"
    (cd "$tmp" && grep " $base.tar.xz\$" SHASUMS256.txt | sha256sum -c - >/dev/null) ||
        die "node: sha256 mismatch for $base.tar.xz"
    # bin/ lib/ include/ (node-gyp's headers) share/man; not the top-level docs.
    tar -xJf "$tmp/$base.tar.xz" -C /usr/local --strip-components=1 --no-same-owner \
        --exclude="$base/CHANGELOG.md" --exclude="$base/README.md" --exclude="$base/LICENSE" \
        --exclude="$base/share/doc"
    rm -rf "$tmp"
    node --version
}

# Fails unless every tool this variant promises runs; records the versions in the image.
step_check() {
    load_versions
    tools="git jq curl tini"
    offline || tools="$tools rustc cargo cargo-clippy rustfmt sqlx docker node npm"
    install -d -m 0755 "$STAMP_DIR"
    out="$STAMP_DIR/versions.txt"
    {
        echo "variant=$(offline && echo offline || echo online)"
        for t in $tools; do
            command -v "$t" >/dev/null 2>&1 || die "check: $t missing"
            "$t" --version >"$STAMP_DIR/.v" 2>&1 || die "check: $t --version failed: $(cat "$STAMP_DIR/.v")"
            echo "$t=$(head -n 1 "$STAMP_DIR/.v")"
        done
        rm -f "$STAMP_DIR/.v"
        echo "user=$BUILDER_USER:$(id -u "$BUILDER_USER")"
    } >"$out"
    [ -r /etc/ssl/certs/ca-certificates.crt ] || die "check: ca-certificates missing"
    cat "$out" >&2
}

[ $# -gt 0 ] || { echo "usage: install-tools.sh apt|user|rust|sqlx|docker-cli|node|check..." >&2; exit 2; }
offline || true # validate OFFLINE early
for s in "$@"; do
    case "$s" in
    apt) step_apt ;;
    user) step_user ;;
    rust) step_rust ;;
    sqlx) step_sqlx ;;
    docker-cli) step_docker_cli ;;
    node) step_node ;;
    check) step_check ;;
    *) echo "install-tools.sh: unknown step '$s'" >&2; exit 2 ;;
    esac
done
