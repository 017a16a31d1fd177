#!/bin/sh
# build-and-push.sh: builds an image, pushes it, and prints the digest-pinned reference to paste
# into runnerd.labels.NAME.image (doc/label-settings.md). build/README.md has the walkthrough.
#
# stdout carries exactly one line, the result: REGISTRY/NAME@sha256:<manifest digest> after a
# push (checked against the registry's Docker-Content-Digest), or sha256:<image id> with
# --no-push. Everything else (docker's output, notes) goes to stderr.
# Exit status: 0 done, 1 build, push or verification failed, 2 bad usage.
set -eu

prog=build-and-push.sh
here=$(cd "$(dirname "$0")" && pwd)
DOCKER=${DOCKER:-docker}
PLACEHOLDER=sha256:UNPINNED
MANIFEST_TYPES='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json'

usage() {
    cat <<EOF
usage: $prog -t REGISTRY/NAME:TAG [-f DOCKERFILE] [--build-arg KEY=VALUE]...
                         [--label KEY=VALUE]... [--no-push] [CONTEXT]

Builds CONTEXT (default: the repository root) with DOCKERFILE (default: CONTEXT/Dockerfile),
tags it REGISTRY/NAME:TAG, pushes it and prints REGISTRY/NAME@sha256:<digest>, the pinned
reference for runnerd.labels.<label>.image, after checking it against the registry.

  -f, --file DOCKERFILE    the Dockerfile (e.g. build/Dockerfile.builder)
  -t, --tag REF            REGISTRY/NAME:TAG to build and push (required)
      --build-arg K=V      passed to docker build (repeatable), e.g. BASE=..., OFFLINE=1
      --label K=V          image label (repeatable)
      --no-push            build only; print sha256:<image id>, the local pin
  -h, --help               this help

A Dockerfile whose ARG BASE default ends in @$PLACEHOLDER gets BASE resolved here: the tag
before the @ is pulled and its registry digest passed as --build-arg BASE (unless given).
Registry credentials for the check come from \$DOCKER_CONFIG/config.json (docker login);
REGISTRY_SCHEME=http|https overrides the scheme (default http for loopback registries).
EOF
}

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "$*"; exit 1; }
bad() { say "$*"; usage >&2; exit 2; }

# ---- options ----------------------------------------------------------------------------------
file= tag= push=1 context=
nl='
'
build_args= labels= have_base=0
need() { [ $# -ge 2 ] && [ -n "$2" ] || bad "option $1 needs a value"; }
add_kv() { # add_kv VAR OPTION VALUE: appends VALUE (KEY=VALUE checked) to the newline list VAR
    case "$3" in
    [A-Za-z_]*=*) ;;
    *) bad "$2 expects KEY=VALUE, not '$3'" ;;
    esac
    case "$3" in *"$nl"*) bad "$2 value must be one line" ;; esac
    eval "$1=\${$1}\$3\$nl"
}
while [ $# -gt 0 ]; do
    case "$1" in
    -h | --help) usage; exit 0 ;;
    -f | --file) need "$@"; file=$2; shift 2 ;;
    --file=*) file=${1#*=}; shift ;;
    -t | --tag) need "$@"; tag=$2; shift 2 ;;
    --tag=*) tag=${1#*=}; shift ;;
    --build-arg) need "$@"; add_kv build_args "$1" "$2"; shift 2 ;;
    --build-arg=*) add_kv build_args --build-arg "${1#*=}"; shift ;;
    --label) need "$@"; add_kv labels "$1" "$2"; shift 2 ;;
    --label=*) add_kv labels --label "${1#*=}"; shift ;;
    --no-push) push=0; shift ;;
    --) shift; break ;;
    -*) bad "unknown option '$1'" ;;
    *) [ -z "$context" ] || bad "more than one CONTEXT ('$context', '$1')"; context=$1; shift ;;
    esac
done
if [ $# -gt 0 ]; then
    [ -z "$context" ] && [ $# -eq 1 ] || bad "more than one CONTEXT"
    context=$1
fi
[ -n "$tag" ] || bad "missing -t REGISTRY/NAME:TAG"
case "$tag" in
*@*) bad "-t takes a tag, not a digest: '$tag'" ;;
*[[:space:]]* | '' | :* | */ | *//*) bad "bad image reference '$tag'" ;;
esac
context=${context:-$(cd "$here/../.." && pwd)}
[ -d "$context" ] || bad "context '$context' is not a directory"
file=${file:-$context/Dockerfile}
[ -f "$file" ] || bad "Dockerfile '$file' not found"
case "$build_args" in BASE=* | *"${nl}BASE="*) have_base=1 ;; esac

# ---- the reference: REPO[:TAG] -> registry host, repository path, tag ------------------------
last=${tag##*/}
case "$last" in
*:*) repo=${tag%:*} ref_tag=${last##*:} ;;
*) repo=$tag ref_tag=latest; tag=$tag:latest ;;
esac
[ -n "$repo" ] && [ -n "$ref_tag" ] || bad "bad image reference '$tag'"
first=${repo%%/*}
case "$repo" in
*/*)
    case "$first" in
    *.* | *:* | localhost) registry=$first path=${repo#*/} ;;
    *) registry=docker.io path=$repo ;;
    esac ;;
*) registry=docker.io path=library/$repo ;;
esac
api_host=$registry
[ "$registry" = docker.io ] && api_host=registry-1.docker.io
case "${REGISTRY_SCHEME:-}" in
http | https) scheme=$REGISTRY_SCHEME ;;
'')
    case "$registry" in
    localhost | localhost:* | 127.* | '[::1]' | '[::1]:'*) scheme=http ;;
    *) scheme=https ;;
    esac ;;
*) bad "REGISTRY_SCHEME must be http or https" ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ---- BASE placeholder -------------------------------------------------------------------------
base_default=$(sed -n 's/^[[:space:]]*ARG[[:space:]][[:space:]]*BASE=\([^[:space:]]*\).*/\1/p' "$file" | head -n 1)
case "$base_default" in
*"@$PLACEHOLDER")
    if [ "$have_base" = 0 ]; then
        want=${base_default%@*}
        say "ARG BASE in $file is a placeholder; pulling $want to pin it"
        $DOCKER pull "$want" >&2 ||
            die "cannot pull $want (offline?): pass --build-arg BASE=<name>@sha256:<digest> or a local image"
        pinned=$($DOCKER image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$want" | head -n 1)
        [ -n "$pinned" ] || die "$want has no registry digest after the pull"
        say "BASE=$pinned (write this into $file to pin the base for good)"
        add_kv build_args --build-arg "BASE=$pinned"
    fi ;;
esac

# ---- build ------------------------------------------------------------------------------------
set -- build --file "$file" --tag "$tag"
old_ifs=$IFS
IFS=$nl
for a in $build_args; do set -- "$@" --build-arg "$a"; done
for l in $labels; do set -- "$@" --label "$l"; done
IFS=$old_ifs
say "docker $* $context"
$DOCKER "$@" "$context" >&2 || die "docker build failed"
id=$($DOCKER image inspect --format '{{.Id}}' "$tag") || die "built image $tag not found"

if [ "$push" = 0 ]; then
    say "built $tag, not pushed; local pin:"
    echo "$id"
    exit 0
fi

# ---- push -------------------------------------------------------------------------------------
say "docker push $tag"
if ! $DOCKER push "$tag" >"$tmp/push.log" 2>&1; then
    cat "$tmp/push.log" >&2
    die "docker push $tag failed"
fi
cat "$tmp/push.log" >&2
pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' "$tmp/push.log" | tail -n 1)
[ -n "$pushed" ] || die "no digest in docker push output"
repo_digest=$($DOCKER image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$tag" |
    grep -F "$repo@sha256:" | head -n 1 || true)
[ "$repo_digest" = "$repo@$pushed" ] ||
    die "docker push said $pushed but the image's RepoDigests say '${repo_digest:-nothing}' for $repo"

# ---- check against the registry ---------------------------------------------------------------
# Basic credentials from docker login, if stored in config.json (not in a credential helper).
cfg=${DOCKER_CONFIG:-$HOME/.docker}/config.json
basic=
if [ -r "$cfg" ] && command -v jq >/dev/null 2>&1; then
    basic=$(jq -r --arg h "$registry" --arg u "https://$registry" --arg v "https://index.docker.io/v1/" \
        '.auths // {} | (.[$h] // .[$u] // (if $h == "docker.io" then .[$v] else null end) // {}) | .auth // empty' \
        "$cfg" 2>/dev/null || true)
fi
umask 077
url="$scheme://$api_host/v2/$path/manifests/$ref_tag"
: >"$tmp/auth"
head_manifest() {
    : >"$tmp/headers"
    curl -sS -I --max-time 30 -H "Accept: $MANIFEST_TYPES" -H @"$tmp/auth" -o "$tmp/headers" \
        -w '%{http_code}' "$url" 2>"$tmp/curl.err" || true
}
# The value of response header $1 (names are case-insensitive).
header() {
    awk -v k="$1" '{ sub(/\r$/, "") }
        tolower(substr($0, 1, length(k) + 1)) == tolower(k) ":" {
            v = substr($0, length(k) + 2); sub(/^[ \t]+/, "", v) }
        END { print v }' "$tmp/headers"
}
status=$(head_manifest)
if [ "$status" = 401 ]; then
    challenge=$(header WWW-Authenticate)
    case "$challenge" in
    Bearer* | bearer*)
        param() { printf '%s\n' "$challenge" | sed -n "s/.*$1=\"\([^\"]*\)\".*/\1/p"; }
        realm=$(param realm) service=$(param service)
        scope=${path:+repository:$path:pull}
        : >"$tmp/basic"
        [ -z "$basic" ] || printf 'Authorization: Basic %s\n' "$basic" >"$tmp/basic"
        token=$(curl -fsS --max-time 30 -H @"$tmp/basic" -G "$realm" \
            --data-urlencode "service=$service" --data-urlencode "scope=$scope" 2>"$tmp/curl.err" |
            sed -n 's/.*"\(access_\)\{0,1\}token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\2/p' | head -n 1) ||
            true
        [ -n "$token" ] || die "cannot verify: no token from $realm ($(cat "$tmp/curl.err"))"
        printf 'Authorization: Bearer %s\n' "$token" >"$tmp/auth" ;;
    Basic* | basic*)
        [ -n "$basic" ] || die "cannot verify: $registry wants credentials (docker login $registry)"
        printf 'Authorization: Basic %s\n' "$basic" >"$tmp/auth" ;;
    *) die "cannot verify: $url answered 401 with '$challenge'" ;;
    esac
    status=$(head_manifest)
fi
[ "$status" = 200 ] || die "cannot verify: HEAD $url gave HTTP $status $(cat "$tmp/curl.err")"
remote=$(header Docker-Content-Digest)
[ -n "$remote" ] || die "cannot verify: HEAD $url has no Docker-Content-Digest header"
[ "$remote" = "$pushed" ] ||
    die "digest mismatch: docker push said $pushed, the registry serves $remote for $repo:$ref_tag"

say "pushed $tag; pinned reference (registry says $remote):"
echo "$repo@$pushed"
