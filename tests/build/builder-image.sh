#!/bin/sh
# build/Dockerfile.builder built offline (OFFLINE=1, BASE = the debootstrap test image, apt from
# the Debian mirror): git, jq, curl and tini run, the builder user has uid 1000, tini is PID 1,
# no secret-looking ENV or build argument, apt lists cleaned. Dockerfile.builder-gpu builds the
# same way (its NVIDIA_* settings). build/scripts/build-and-push.sh against a docker-registry on
# a free loopback port: the printed REGISTRY/NAME@sha256:<digest> equals the registry's
# Docker-Content-Digest for the tag and `docker pull` by that digest works; --no-push prints the
# image Id; bad options exit 2 with the usage; an unresolvable BASE placeholder fails clearly.
#
# The offline builder image is kept as runnerd-test/builder-offline:<hash of its inputs> (like
# tests/images), so that its layers are the build cache of the next run; older hashes and
# everything else this test makes are removed, also on failure.
set -u
: "${SRCDIR:?}"
DOCKER=${DOCKER:-docker}
fail=0
tmp=$(mktemp -d)
reg_pid=
run_tag=rt$$
test_label=io.runnerd.test=builder-image-$$

cleanup() {
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
    $DOCKER ps -aq --filter "label=$test_label" | xargs -r $DOCKER rm -f >/dev/null 2>&1
    # Images built through build-and-push.sh carry the run's label; -f drops all their names
    # (the registry tag, the digest reference after the pull, the --no-push tag).
    $DOCKER image ls -q --filter "label=$test_label" | sort -u | xargs -r $DOCKER rmi -f >/dev/null 2>&1
    $DOCKER rmi "runnerd-test/builder-gpu-offline:$run_tag" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok() { echo "ok   $*"; }
no() { echo "FAIL $*"; fail=1; }
check() { # check NAME WANT-EXIT COMMAND...: runs COMMAND, output in $tmp/out and $tmp/err
    name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        no "$name: exit $got, expected $want"; tail -n 30 "$tmp/out" "$tmp/err"; return 1
    fi
    ok "$name"
}
contains() { grep -qF -- "$3" "$2" || { no "$1: $2 lacks '$3'"; head -n 20 "$2"; }; }

deb=$("$SRCDIR/tests/images/build.sh" debian | tail -n 1) || { no "no debian test image"; exit 1; }
deb_id=$($DOCKER image inspect --format '{{.Id}}' "$deb")

# The build context: only what the builder Dockerfiles read.
ctx=$tmp/ctx
mkdir -p "$ctx/build"
cp -R "$SRCDIR/build/scripts" "$ctx/build/scripts"
hash=$(cat "$SRCDIR/build/Dockerfile.builder" "$ctx"/build/scripts/* | sha256sum | cut -c1-12)
hash=$(printf '%s %s\n' "$hash" "$deb_id" | sha256sum | cut -c1-16)
img=runnerd-test/builder-offline:$hash

# ---- the offline builder image ----------------------------------------------------------------
check build-offline 0 $DOCKER build -f "$SRCDIR/build/Dockerfile.builder" \
    --build-arg OFFLINE=1 --build-arg "BASE=$deb" -t "$img" "$ctx" || exit 1
for old in $($DOCKER image ls --format '{{.Repository}}:{{.Tag}}' runnerd-test/builder-offline); do
    [ "$old" = "$img" ] || $DOCKER rmi "$old" >/dev/null 2>&1
done

# run NAME COMMAND: a shell command in a throwaway container of the image, as root.
run() {
    name=$1
    shift
    check "$name" 0 $DOCKER run --rm --label "$test_label" "$img" sh -c "$*"
}
run tools 'git --version && jq --version && curl --version && tini --version && test -r /etc/ssl/certs/ca-certificates.crt'
contains tools "$tmp/out" "git version"
contains tools "$tmp/out" "jq-"
contains tools "$tmp/out" "tini version"
run versions-file 'cat /usr/local/share/runnerd-builder/versions.txt'
contains versions-file "$tmp/out" "variant=offline"
contains versions-file "$tmp/out" "user=builder:1000"
run builder-user 'id -u builder; id -g builder; getent passwd builder | cut -d: -f6,7'
[ "$(cat "$tmp/out")" = "1000
1000
/home/builder:/bin/bash" ] && ok "builder is uid/gid 1000, home /home/builder" || no "builder user: $(cat "$tmp/out")"
check as-builder 0 $DOCKER run --rm --label "$test_label" --user builder "$img" sh -c 'id -un; touch "$HOME/x"'
contains as-builder "$tmp/out" "builder"
# tini is PID 1 and the command its child (the entrypoint, with the default CMD replaced).
run tini-pid1 'tr "\0" " " </proc/1/cmdline; echo; sed -n "s/^PPid:[[:space:]]*//p" /proc/$$/status'
contains tini-pid1 "$tmp/out" "/usr/bin/tini -- sh -c"
[ "$(tail -n 1 "$tmp/out")" = 1 ] && ok "the command is a child of PID 1" || no "PPid: $(tail -n 1 "$tmp/out")"
[ "$($DOCKER image inspect --format '{{json .Config.Entrypoint}}' "$img")" = '["/usr/bin/tini","--"]' ] &&
    ok "entrypoint is tini" || no "entrypoint: $($DOCKER image inspect --format '{{json .Config.Entrypoint}}' "$img")"
[ "$($DOCKER image inspect --format '{{.Config.User}}' "$img")" = "" ] &&
    ok "default user root (socket labels)" || no "default user changed"
run apt-lists-clean 'ls /var/lib/apt/lists | grep -v -e "^lock$" -e "^partial$" | wc -l'
[ "$(cat "$tmp/out")" = 0 ] && ok "apt lists removed" || no "apt lists left: $(cat "$tmp/out")"

# No secret-looking names in ENV, nor in the build arguments the history records.
secretish='(TOKEN|SECRET|PASSW|PASSWD|CREDENTIAL|AUTH|API_?KEY|PRIVATE)'
$DOCKER image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$img" >"$tmp/env"
if cut -d= -f1 "$tmp/env" | grep -Eiq "$secretish"; then no "secret-looking ENV: $(cat "$tmp/env")"; else ok "no secret-looking ENV ($(cut -d= -f1 "$tmp/env" | tr '\n' ' '))"; fi
$DOCKER history --no-trunc --format '{{.CreatedBy}}' "$img" >"$tmp/history"
if grep -Eo '\|[0-9]+ [^/]*' "$tmp/history" | grep -Eiq "$secretish"; then
    no "secret-looking build argument in the history"; grep -E '\|[0-9]+ ' "$tmp/history" | head -3
else
    ok "no secret-looking build arguments in the history"
fi

# ---- the GPU variant, offline on the same base (its shared steps come from the cache) ---------
gpu=runnerd-test/builder-gpu-offline:$run_tag
check build-gpu-offline 0 $DOCKER build -f "$SRCDIR/build/Dockerfile.builder-gpu" \
    --build-arg OFFLINE=1 --build-arg "BASE=$deb" -t "$gpu" "$ctx" &&
{
    $DOCKER image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$gpu" >"$tmp/genv"
    contains gpu-env "$tmp/genv" "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
    grep -q '^NVIDIA_VISIBLE_DEVICES=' "$tmp/genv" && no "gpu: NVIDIA_VISIBLE_DEVICES set" ||
        ok "gpu: NVIDIA_VISIBLE_DEVICES left to the runtime"
    [ "$($DOCKER image inspect --format '{{json .Config.Entrypoint}}' "$gpu")" = '["/usr/bin/tini","--"]' ] &&
        ok "gpu: entrypoint is tini" || no "gpu: entrypoint"
}

# ---- build-and-push.sh against a local registry -----------------------------------------------
bap=$SRCDIR/build/scripts/build-and-push.sh
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/registry"
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
reg_pid=$!
i=0
until curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 50 ] || ! kill -0 "$reg_pid" 2>/dev/null; then
        no "docker-registry did not start on 127.0.0.1:$port"; cat "$tmp/registry/log"; exit 1
    fi
    sleep 0.2
done
ok "docker-registry on 127.0.0.1:$port"

repo=127.0.0.1:$port/runnerd-test/builder
check push 0 sh "$bap" -f "$SRCDIR/build/Dockerfile.builder" -t "$repo:$run_tag" \
    --build-arg OFFLINE=1 --build-arg "BASE=$deb" --label "$test_label" "$ctx"
ref=$(cat "$tmp/out")
case "$ref" in
"$repo@sha256:"????????????????????????????????????????????????????????????????)
    ok "printed $ref" ;;
*) no "push printed '$ref', expected $repo@sha256:<64 hex>"; cat "$tmp/err" ;;
esac
digest=${ref#*@}
curl -sS -I -o "$tmp/headers" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json' \
    "http://127.0.0.1:$port/v2/runnerd-test/builder/manifests/$run_tag"
remote=$(tr -d '\r' <"$tmp/headers" | awk 'tolower($1) == "docker-content-digest:" {print $2}')
[ -n "$remote" ] && [ "$remote" = "$digest" ] && ok "registry's Docker-Content-Digest is $remote" ||
    no "registry says '$remote', build-and-push.sh printed '$digest'"
# Same layers as the offline image (a cached build; only the label differs).
[ "$($DOCKER image inspect --format '{{json .RootFS.Layers}}' "$repo:$run_tag")" = \
  "$($DOCKER image inspect --format '{{json .RootFS.Layers}}' "$img")" ] &&
    ok "pushed image has the offline builder's layers" || no "pushed image's layers differ from $img"
$DOCKER image inspect --format '{{index .Config.Labels "io.runnerd.test"}}' "$repo:$run_tag" >"$tmp/lbl"
contains label "$tmp/lbl" "builder-image-$$"
# Forget the registry names locally, then pull by digest: the manifest comes from the registry.
$DOCKER rmi "$repo:$run_tag" "$ref" >/dev/null 2>&1
check pull-by-digest 0 $DOCKER pull "$ref"
$DOCKER image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" >"$tmp/rd" 2>&1
contains pull-by-digest "$tmp/rd" "$ref"

# ---- --no-push, usage errors, unresolvable placeholder ----------------------------------------
check no-push 0 sh "$bap" --no-push -f "$SRCDIR/build/Dockerfile.builder" \
    -t "runnerd-test/builder-nopush:$run_tag" --label "$test_label" \
    --build-arg OFFLINE=1 --build-arg "BASE=$deb" "$ctx"
want=$($DOCKER image inspect --format '{{.Id}}' "runnerd-test/builder-nopush:$run_tag" 2>/dev/null)
case "$(cat "$tmp/out")" in
sha256:*) [ "$(cat "$tmp/out")" = "$want" ] && ok "--no-push printed the image Id $want" ||
    no "--no-push printed '$(cat "$tmp/out")', image Id is '$want'" ;;
*) no "--no-push printed '$(cat "$tmp/out")'" ;;
esac
[ "$(wc -l <"$tmp/out")" -eq 1 ] && ok "stdout is one line" || no "stdout: $(cat "$tmp/out")"

usage_case() { # usage_case NAME ARGS...: exit 2, usage on stderr, nothing on stdout
    name=$1
    shift
    check "usage-$name" 2 sh "$bap" "$@" || return
    contains "usage-$name" "$tmp/err" "usage: build-and-push.sh"
    [ -s "$tmp/out" ] && no "usage-$name: stdout not empty"
}
usage_case no-tag -f "$SRCDIR/build/Dockerfile.builder"
usage_case unknown-option --frobnicate -t x/y:1
usage_case bad-build-arg -t x/y:1 --build-arg NOEQUALS
usage_case digest-as-tag -t "x/y@sha256:$(printf '%064d' 0)"
usage_case missing-value -t
usage_case no-dockerfile -t x/y:1 -f "$tmp/nonexistent"
check help 0 sh "$bap" -h
contains help "$tmp/out" "--no-push"

# The Dockerfile's placeholder BASE cannot be resolved offline: exit 1 and say what to do.
check placeholder-offline 1 sh "$bap" --no-push -f "$SRCDIR/build/Dockerfile.builder" \
    -t "runnerd-test/builder-nopush:$run_tag-p" "$ctx"
contains placeholder-offline "$tmp/err" "pass --build-arg BASE="

[ "$fail" -eq 0 ] && echo "PASS" || echo "FAILED"
exit "$fail"
