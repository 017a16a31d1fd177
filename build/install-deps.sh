#!/bin/sh
# Installs what runnerd needs to build and test on a fresh Debian 12 host (run as root or via sudo).
set -eu
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config clang libclang-rt-14-dev clang-tidy clang-format cppcheck \
    libuv1-dev libcurl4-openssl-dev libjansson-dev libgit2-dev libsqlite3-dev \
    libssl-dev libyaml-dev ca-certificates curl git python3 \
    busybox-static debootstrap docker-registry libhttp-parser-dev prometheus systemd >/dev/null
# node for the node-action tests' image (tests/images/build.sh node): Debian's, unless the
# host already has one.
command -v node >/dev/null 2>&1 ||
    $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null
echo "install-deps: done"
