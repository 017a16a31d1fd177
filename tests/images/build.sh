#!/bin/sh
# build.sh: builds the offline test images once, cached by content hash (no registry, no pull).
#
#   tests/images/build.sh busybox   -> runnerd-test/busybox:<hash>  (+ alias :latest)
#   tests/images/build.sh debian    -> runnerd-test/debian:<hash>   (+ alias :latest)
#
# Prints the hashed reference on stdout (the last line). The hash covers this script and the
# inputs (the busybox binary; the Debian suite and mirror), so a changed input gives a new tag,
# and an existing tag means the image is already built: the script then does nothing.
# busybox: spec docker-engine.md §6.1 (package busybox-static). debian: §6.3 (debootstrap).
set -eu

kind=${1:-busybox}
here=$(cd "$(dirname "$0")" && pwd)
self_hash=$(sha256sum "$here/build.sh" | cut -c1-64)
DOCKER=${DOCKER:-docker}

# One builder per kind at a time (tests run in parallel); the lock dies with the process.
lock=/tmp/runnerd-test-image-$kind.lock
exec 9>"$lock"
flock 9

have_image() {
    $DOCKER image inspect "$1" >/dev/null 2>&1
}

case "$kind" in
busybox)
    bb=/bin/busybox
    [ -x "$bb" ] || { echo "build.sh: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
    hash=$(printf '%s %s busybox\n' "$self_hash" "$(sha256sum "$bb" | cut -c1-64)" | sha256sum | cut -c1-16)
    ref=runnerd-test/busybox:$hash
    if ! have_image "$ref"; then
        R=$(mktemp -d)
        trap 'rm -rf "$R"' EXIT
        mkdir -p "$R"/bin "$R"/etc "$R"/tmp "$R"/root "$R"/proc "$R"/sys "$R"/dev "$R"/workspace
        cp "$bb" "$R"/bin/busybox
        for a in $("$R"/bin/busybox --list); do
            [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
        done
        printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R"/etc/passwd
        printf 'root:x:0:\nnogroup:x:65534:\n' >"$R"/etc/group
        chmod 1777 "$R"/tmp
        tar -C "$R" --numeric-owner -cf "$R.tar" .
        $DOCKER import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
            --change "LABEL io.runnerd.test-image-hash=$hash" \
            -m 'runnerd test busybox-static rootfs' "$R.tar" "$ref" >/dev/null
        rm -f "$R.tar"
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
*)
    echo "usage: build.sh busybox|debian" >&2
    exit 2
    ;;
esac
$DOCKER tag "$ref" "runnerd-test/$kind:latest"
echo "$ref"
