#!/bin/sh
# build.sh: builds the offline test images once, cached by content hash (no registry, no pull).
#
#   tests/images/build.sh busybox    -> runnerd-test/busybox:<hash>     (+ alias :latest)
#   tests/images/build.sh debian     -> runnerd-test/debian:<hash>      (+ alias :latest)
#   tests/images/build.sh docker-cli -> runnerd-test/docker-cli:<hash>  (+ alias :latest)
#   tests/images/build.sh dind       -> runnerd-test/dind:<hash>        (+ alias :latest)
#   tests/images/build.sh node       -> runnerd-test/node:<hash>        (+ alias :latest)
#
# Prints the hashed reference on stdout (the last line). The hash covers this script and the
# inputs (the busybox binary; the Debian suite and mirror; the host's docker binaries and the
# libraries they link), so a changed input gives a new tag, and an existing tag means the image
# is already built: the script then does nothing.
# busybox: doc/docker-engine.md §6.1 (package busybox-static). debian: §6.3 (debootstrap).
# docker-cli: busybox plus the host's docker CLI and its libraries (§6.2).
# node: busybox plus the host's node binary and its libraries (node actions).
# dind: busybox plus the host's engine (dockerd, containerd, containerd-shim-runc-v2, runc,
# docker-init, docker-proxy, the docker CLI) and their libraries (§4.2), entry point
# /usr/local/bin/dind-entry: dockerd without iptables and without the default bridge (the
# image has no iptables; inner containers use --network none or host), with the vfs storage
# driver unless --storage-driver is given (vfs works on any filesystem under a container).
set -eu

kind=${1:-busybox}
here=$(cd "$(dirname "$0")" && pwd)
self_hash=$(sha256sum "$here/build.sh" | cut -c1-64)
DOCKER=${DOCKER:-docker}
bb=/bin/busybox

# One builder per kind at a time (tests run in parallel); the lock dies with the process.
lock=/tmp/runnerd-test-image-$kind.lock
exec 9>"$lock"
flock 9

have_image() {
    $DOCKER image inspect "$1" >/dev/null 2>&1
}

need_busybox() {
    [ -x "$bb" ] || { echo "build.sh: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
}

# busybox_rootfs DIR: a busybox-static rootfs (§6.1).
busybox_rootfs() {
    mkdir -p "$1"/bin "$1"/etc "$1"/tmp "$1"/root "$1"/proc "$1"/sys "$1"/dev "$1"/workspace
    cp "$bb" "$1"/bin/busybox
    for a in $("$1"/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$1/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$1"/etc/passwd
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$1"/etc/group
    chmod 1777 "$1"/tmp
}

# libs_of BIN...: the shared libraries (and the dynamic loader) the binaries link, per ldd.
libs_of() {
    for b in "$@"; do
        ldd "$b" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} /^[[:space:]]*\// {print $1}'
    done | sort -u
}

# files_hash FILE...: one hash of the files' contents and of the libraries they link.
files_hash() {
    { printf '%s\n' "$@"; libs_of "$@"; } | sort -u | xargs sha256sum | sha256sum | cut -c1-64
}

# add_bins DIR BIN...: copies the binaries into DIR/usr/local/bin and their libraries to the
# same paths under DIR (§6.2).
add_bins() {
    dir=$1
    shift
    mkdir -p "$dir"/usr/local/bin
    for b in "$@"; do
        cp -L "$b" "$dir/usr/local/bin/$(basename "$b")"
    done
    for l in $(libs_of "$@"); do
        mkdir -p "$dir$(dirname "$l")"
        cp -L "$l" "$dir$l"
    done
}

# The docker CLI: $DOCKER_CLI, else Debian's (the engine's own version), else /usr/local/bin's.
docker_cli() {
    for c in ${DOCKER_CLI:-} /usr/bin/docker /usr/local/bin/docker; do
        [ -x "$c" ] && { echo "$c"; return 0; }
    done
    echo "build.sh: no docker CLI found (set DOCKER_CLI)" >&2
    return 1
}

# import_rootfs DIR REF HASH MESSAGE CHANGE...: imports DIR as REF.
import_rootfs() {
    d=$1 r=$2 h=$3 m=$4
    shift 4
    set -- "$@" --change "LABEL io.runnerd.test-image-hash=$h"
    tar -C "$d" --numeric-owner -cf "$d.tar" .
    $DOCKER import "$@" -m "$m" "$d.tar" "$r" >/dev/null
    rm -f "$d.tar"
}

case "$kind" in
busybox)
    need_busybox
    hash=$(printf '%s %s busybox\n' "$self_hash" "$(sha256sum "$bb" | cut -c1-64)" | sha256sum | cut -c1-16)
    ref=runnerd-test/busybox:$hash
    if ! have_image "$ref"; then
        R=$(mktemp -d)
        trap 'rm -rf "$R" "$R.tar"' EXIT
        busybox_rootfs "$R"
        import_rootfs "$R" "$ref" "$hash" 'runnerd test busybox-static rootfs' \
            --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]'
    fi
    ;;
debian)
    suite=${DEBIAN_SUITE:-bookworm}
    mirror=${DEBIAN_MIRROR:-}
    if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
        mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
        mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$mirror" ] || { echo "build.sh: no Debian mirror found (set DEBIAN_MIRROR)" >&2; exit 1; }
    hash=$(printf '%s %s %s debian\n' "$self_hash" "$suite" "$mirror" | sha256sum | cut -c1-16)
    ref=runnerd-test/debian:$hash
    if ! have_image "$ref"; then
        command -v debootstrap >/dev/null || { echo "build.sh: debootstrap missing" >&2; exit 1; }
        R=$(mktemp -d)
        trap 'umount "$R/proc" "$R/sys" 2>/dev/null; rm -rf "$R" "$R.log"' EXIT
        if ! debootstrap --variant=minbase "$suite" "$R" "$mirror" >"$R.log" 2>&1; then
            tail -20 "$R.log" >&2
            exit 1
        fi
        rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
        mkdir -p "$R"/workspace
        tar -C "$R" --numeric-owner -c . | $DOCKER import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["/bin/bash"]' \
            --change "LABEL io.runnerd.test-image-hash=$hash" \
            -m "runnerd test debian $suite (debootstrap minbase)" - "$ref" >/dev/null
    fi
    ;;
docker-cli)
    need_busybox
    cli=$(docker_cli)
    hash=$(printf '%s %s docker-cli\n' "$self_hash" "$(files_hash "$bb" "$cli")" | sha256sum | cut -c1-16)
    ref=runnerd-test/docker-cli:$hash
    if ! have_image "$ref"; then
        R=$(mktemp -d)
        trap 'rm -rf "$R" "$R.tar"' EXIT
        busybox_rootfs "$R"
        add_bins "$R" "$cli"
        import_rootfs "$R" "$ref" "$hash" 'runnerd test busybox + docker CLI' \
            --change 'ENV PATH=/usr/local/bin:/bin' --change 'CMD ["/bin/sh"]'
    fi
    ;;
node)
    need_busybox
    nodebin=$(command -v node) || { echo "build.sh: node missing (apt-get install nodejs)" >&2; exit 1; }
    hash=$(printf '%s %s node\n' "$self_hash" "$(files_hash "$bb" "$nodebin")" | sha256sum | cut -c1-16)
    ref=runnerd-test/node:$hash
    if ! have_image "$ref"; then
        R=$(mktemp -d)
        trap 'rm -rf "$R" "$R.tar"' EXIT
        busybox_rootfs "$R"
        add_bins "$R" "$nodebin"
        import_rootfs "$R" "$ref" "$hash" 'runnerd test busybox + node' \
            --change 'ENV PATH=/usr/local/bin:/bin' --change 'CMD ["/bin/sh"]'
    fi
    ;;
dind)
    need_busybox
    cli=$(docker_cli)
    bins=$cli
    for b in dockerd containerd containerd-shim-runc-v2 runc docker-init docker-proxy; do
        p=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin command -v "$b") ||
            { echo "build.sh: $b missing (apt-get install docker.io)" >&2; exit 1; }
        bins="$bins $p"
    done
    # shellcheck disable=SC2086 # bins: paths without blanks
    hash=$(printf '%s %s dind\n' "$self_hash" "$(files_hash "$bb" $bins)" | sha256sum | cut -c1-16)
    ref=runnerd-test/dind:$hash
    if ! have_image "$ref"; then
        R=$(mktemp -d)
        trap 'rm -rf "$R" "$R.tar"' EXIT
        busybox_rootfs "$R"
        # shellcheck disable=SC2086
        add_bins "$R" $bins
        mkdir -p "$R"/var/lib/docker "$R"/var/run "$R"/run "$R"/certs
        cat >"$R"/usr/local/bin/dind-entry <<'ENTRY'
#!/bin/sh
# dind-entry: dockerd in a container (runnerd's dind test image). The arguments are dockerd's
# (a leading "dockerd" is dropped). No iptables here: no NAT and no default bridge.
set -e
[ "${1:-}" = dockerd ] && shift
# cgroup v2: leave the root group so that controllers can be delegated to the inner engine.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
        >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
rm -f /var/run/docker.pid
driver=--storage-driver=vfs
for a in "$@"; do
    case "$a" in --storage-driver* | -s) driver= ;; esac
done
exec dockerd --iptables=false --ip6tables=false --bridge=none $driver "$@"
ENTRY
        chmod 755 "$R"/usr/local/bin/dind-entry
        import_rootfs "$R" "$ref" "$hash" 'runnerd test dind: busybox + the host docker engine' \
            --change 'ENV PATH=/usr/local/bin:/bin' \
            --change 'ENTRYPOINT ["/usr/local/bin/dind-entry"]' \
            --change 'VOLUME /var/lib/docker'
    fi
    ;;
*)
    echo "usage: build.sh busybox|debian|docker-cli|dind|node" >&2
    exit 2
    ;;
esac
$DOCKER tag "$ref" "runnerd-test/$kind:latest"
echo "$ref"
