#!/bin/sh
# build/Dockerfile built for real, offline: BASE = the debootstrap test image, the build stage's
# -dev packages from the Debian mirror, cmake from this tree's sources. The runtime image has
# runnerd, runnerctl and the static runner-agent, no compiler or headers, runs as the non-root
# runnerd user, exposes nothing, has /var/lib/runnerd as a volume and tini as PID 1. Then it runs
# as documented (state volume, config mounted read-only, Docker socket with the docker GID): a
# registration imported with the image's runnerctl, runnerd starts, the HEALTHCHECK (curl on
# 127.0.0.1:9464/healthz) turns healthy, and `docker stop` (SIGTERM through tini) ends it with 0.
#
# The build stage and the image stay as runnerd-test/runnerd-build:<hash> and
# runnerd-test/runnerd-image:<hash> (hash of the inputs), the next run's build cache; older
# hashes and the containers and volume this test makes are removed, also on failure.
set -u
: "${SRCDIR:?}"
DOCKER=${DOCKER:-docker}
fail=0
tmp=$(mktemp -d)
test_label=io.runnerd.test=runnerd-image-$$
vol=runnerd-test-state-$$

cleanup() {
    $DOCKER ps -aq --filter "label=$test_label" | xargs -r $DOCKER rm -f >/dev/null 2>&1
    $DOCKER volume rm "$vol" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok() { echo "ok   $*"; }
no() { echo "FAIL $*"; fail=1; }
check() { # check NAME WANT-EXIT COMMAND...: output in $tmp/out and $tmp/err
    name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        no "$name: exit $got, expected $want"; tail -n 40 "$tmp/out" "$tmp/err"; return 1
    fi
    ok "$name"
}
is() { # is NAME GOT WANT
    [ "$2" = "$3" ] && ok "$1: $2" || no "$1: '$2', expected '$3'"
}
inspect() { $DOCKER image inspect --format "$1" "$img"; }

deb=$("$SRCDIR/tests/images/build.sh" debian | tail -n 1) || { no "no debian test image"; exit 1; }

# The context: what the Dockerfile COPYs (a checkout's _build directories stay out).
ctx=$tmp/ctx
mkdir "$ctx"
for p in CMakeLists.txt cmake include lib proto agent daemon tests; do
    cp -R "$SRCDIR/$p" "$ctx/$p"
done
rm -rf "$ctx/tests/fuzz/corpus-"* 2>/dev/null
hash=$( (cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum
    sha256sum <"$SRCDIR/build/Dockerfile"
    $DOCKER image inspect --format '{{.Id}}' "$deb") | sha256sum | cut -c1-16)
stage=runnerd-test/runnerd-build:$hash
img=runnerd-test/runnerd-image:$hash

check build-stage 0 $DOCKER build -f "$SRCDIR/build/Dockerfile" --target build \
    --build-arg "BASE=$deb" -t "$stage" "$ctx" || exit 1
check build-image 0 $DOCKER build -f "$SRCDIR/build/Dockerfile" \
    --build-arg "BASE=$deb" -t "$img" "$ctx" || exit 1
for repo in runnerd-test/runnerd-image runnerd-test/runnerd-build; do
    for old in $($DOCKER image ls --format '{{.Repository}}:{{.Tag}}' "$repo"); do
        [ "$old" = "$repo:$hash" ] || $DOCKER rmi "$old" >/dev/null 2>&1
    done
done

# ---- the image's configuration ----------------------------------------------------------------
is user "$(inspect '{{.Config.User}}')" runnerd
is entrypoint "$(inspect '{{json .Config.Entrypoint}}')" '["/usr/bin/tini","--","/usr/bin/runnerd"]'
is cmd "$(inspect '{{json .Config.Cmd}}')" '["-c","/etc/runnerd/config.yaml"]'
is exposed-ports "$(inspect '{{json .Config.ExposedPorts}}')" null
is volumes "$(inspect '{{json .Config.Volumes}}')" '{"/var/lib/runnerd":{}}'
case "$(inspect '{{json .Config.Healthcheck.Test}}')" in
*curl*http://127.0.0.1:9464/healthz*) ok "healthcheck: curl on 127.0.0.1:9464/healthz" ;;
*) no "healthcheck: $(inspect '{{json .Config.Healthcheck}}')" ;;
esac

check version 0 $DOCKER run --rm --label "$test_label" "$img" --version
is runnerd-version "$(cat "$tmp/out")" "runnerd $(sed -n 's/^project(runnerd VERSION \([0-9.]*\).*/\1/p' "$SRCDIR/CMakeLists.txt")"
check contents 0 $DOCKER run --rm --label "$test_label" --entrypoint sh "$img" -c '
    id -u; id -g; stat -c "%U:%G %a" /var/lib/runnerd
    runnerctl --version
    test -x /usr/libexec/runnerd/runner-agent && ! ldd /usr/libexec/runnerd/runner-agent >/dev/null 2>&1 && echo agent-static
    for t in gcc cc cmake make; do command -v $t && echo "has $t"; done
    test -e /usr/include/curl/curl.h && echo "has headers"
    test -d /var/lib/apt/lists && ls /var/lib/apt/lists | grep -v -e "^lock$" -e "^partial$" | sed "s/^/apt list /"
    true'
is contents "$(tr '\n' ' ' <"$tmp/out")" "10001 10001 runnerd:runnerd 700 runnerctl $(sed -n 's/^project(runnerd VERSION \([0-9.]*\).*/\1/p' "$SRCDIR/CMakeLists.txt") agent-static "

# ---- run it as build/README.md says; the healthcheck turns healthy -----------------------------
mkdir -p "$tmp/etc"
cat >"$tmp/etc/config.yaml" <<'EOF'
runner:
  capacity: 1
  fetch_interval: 2s
runnerd:
  http: 127.0.0.1:9464
EOF
# A registration to a Gitea that is not there (port 9 on the container's loopback): runnerd
# keeps retrying with backoff, which is alive (healthz) though not ready.
cat >"$tmp/etc/runner.json" <<'EOF'
{"id": 1, "uuid": "8f0c8a52-4a3e-4f0e-9a63-2f7e3c1d9b10", "name": "image-test",
 "token": "0000000000000000000000000000000000000000", "address": "http://127.0.0.1:9",
 "labels": ["matric-builder:docker://runnerd-test/busybox:latest"]}
EOF
chmod 0755 "$tmp" "$tmp/etc"
chmod 0644 "$tmp/etc"/*
$DOCKER volume create --label "$test_label" "$vol" >/dev/null
check register-import 0 $DOCKER run --rm --label "$test_label" -v "$vol:/var/lib/runnerd" \
    -v "$tmp/etc:/etc/runnerd:ro" --entrypoint runnerctl "$img" register --import /etc/runnerd/runner.json
sock=/var/run/docker.sock
gid=$(stat -c %g "$sock")
check start 0 $DOCKER run -d --label "$test_label" --name "runnerd-test-image-$$" \
    --health-interval 1s --health-start-period 1s \
    -v "$vol:/var/lib/runnerd" -v "$tmp/etc:/etc/runnerd:ro" -v "$sock:$sock" --group-add "$gid" "$img"
cid=$(cat "$tmp/out")
i=0 health=
while [ "$i" -lt 60 ]; do
    health=$($DOCKER inspect --format '{{.State.Health.Status}}' "$cid" 2>/dev/null)
    running=$($DOCKER inspect --format '{{.State.Running}}' "$cid" 2>/dev/null)
    [ "$health" = healthy ] || [ "$running" != true ] && break
    i=$((i + 1))
    sleep 0.5
done
if [ "$health" = healthy ]; then
    ok "container healthy (HEALTHCHECK curl /healthz)"
else
    no "container health '$health', running '$running'"
    $DOCKER inspect --format '{{json .State.Health}}' "$cid"
    $DOCKER logs "$cid" 2>&1 | tail -n 20
fi
$DOCKER logs "$cid" >"$tmp/log" 2>&1
grep -q 'Docker engine connected' "$tmp/log" && ok "runnerd reached the Docker socket (group-add $gid)" ||
    { no "runnerd did not connect to Docker"; tail -n 20 "$tmp/log"; }
check pid1 0 $DOCKER exec "$cid" sh -c 'tr "\0" " " </proc/1/cmdline'
case "$(cat "$tmp/out")" in
"/usr/bin/tini -- /usr/bin/runnerd "*) ok "PID 1 is tini" ;;
*) no "PID 1: $(cat "$tmp/out")" ;;
esac
check stop 0 $DOCKER stop -t 30 "$cid"
is exit-after-sigterm "$($DOCKER inspect --format '{{.State.ExitCode}}' "$cid")" 0

[ "$fail" -eq 0 ] && echo "PASS" || echo "FAILED"
exit "$fail"
