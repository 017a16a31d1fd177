#!/bin/sh
# tests/systemd/verify.sh: the systemd files in systemd/ are valid and say what runnerd needs.
#
#   1. `systemd-analyze verify --root=TMP` loads runnerd.service in a throw-away root that has
#      the host's unit files (targets), the built runnerd as /usr/bin/runnerd and every other
#      Exec*= command; any message about the unit fails (unknown keys are only warnings
#      there). Negative checks: a misspelt directive and a missing ExecStart binary must fail.
#   2. `systemd-analyze security --offline` keeps the exposure at or below 5.0.
#   3. grep: Type=notify, restart policy for exit statuses 75/78, KillMode, the user, the
#      directories, the sandbox lines, and none of the settings that would hide the GPUs.
#   4. runnerd takes `-c FILE` and exits 2 (not restarted) on a missing configuration.
#   5. systemd-sysusers --root=TMP creates the runnerd user and group and its docker
#      membership; systemd-tmpfiles --root=TMP (as root) makes the directories with the
#      modes the unit uses.
#
# Environment (set by CTest): SRCDIR (source tree), RUNNERD (built binary), BINDIR (unused).
# Works without systemd as PID 1. Exits 0 only when every check passes.
set -u

SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
RUNNERD=${RUNNERD:-}
SD="$SRCDIR/systemd"
UNIT="$SD/runnerd.service"
failures=0

ok() { echo "ok   $*"; }
fail() {
    echo "FAIL $*" >&2
    failures=$((failures + 1))
}
die() {
    echo "FAIL $*" >&2
    exit 1
}

for f in "$UNIT" "$SD/runnerd.sysusers" "$SD/runnerd.tmpfiles"; do
    [ -f "$f" ] || die "$f is missing"
done
for t in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not installed (apt-get install systemd)"
done
[ -n "$RUNNERD" ] && [ -x "$RUNNERD" ] ||
    die "RUNNERD='$RUNNERD' is not an executable runnerd (CTest sets it; export it by hand)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/runnerd-sd.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
unset SYSTEMD_UNIT_PATH

# ---------------------------------------------------------------- 1. systemd-analyze verify

root="$tmp/root"
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/bin"
# The targets the unit depends on (sysinit.target, network-online.target, ...) come from the
# host, as on a real system.
sysunits=
for d in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -f "$d/sysinit.target" ]; then
        sysunits=$d
        break
    fi
done
[ -n "$sysunits" ] || die "no systemd unit directory with sysinit.target on this host"
cp -R "$sysunits" "$root/usr/lib/systemd/system" || die "copying $sysunits failed"
cp "$UNIT" "$root/etc/systemd/system/runnerd.service"

# Every Exec*= command must resolve inside the root: runnerd is the built binary, the others
# (ExecReload's kill) are the host's.
execs=$(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$UNIT" | sort -u)
[ -n "$execs" ] || fail "runnerd.service has no Exec*= lines"
for p in $execs; do
    case $p in
    /*) ;;
    *)
        fail "Exec command '$p' is not an absolute path"
        continue
        ;;
    esac
    mkdir -p "$root$(dirname "$p")"
    if [ "$p" = /usr/bin/runnerd ]; then
        cp "$RUNNERD" "$root$p"
    elif [ -x "$p" ]; then
        cp "$p" "$root$p"
    else
        fail "Exec command $p does not exist on this host"
    fi
done
grep -q '^ExecStart=/usr/bin/runnerd ' "$UNIT" || fail "ExecStart is not /usr/bin/runnerd ..."

# Prints what systemd-analyze says; fails (1) on a non-zero status or any message at all.
analyze() {
    out=$(systemd-analyze verify --root="$root" runnerd.service 2>&1)
    rc=$?
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/     | /'
    [ "$rc" -eq 0 ] && [ -z "$out" ]
}

if analyze; then
    ok "systemd-analyze verify runnerd.service"
else
    fail "systemd-analyze verify runnerd.service reported problems (above)"
fi

# Negative checks: the same verification must reject a broken unit.
ru="$root/etc/systemd/system/runnerd.service"
sed 's/^KillMode=/KilMode=/' "$UNIT" >"$ru"
if grep -q '^KilMode=' "$ru" && ! analyze >/dev/null; then
    ok "a misspelt directive (KilMode=) fails verification"
else
    fail "verification accepted a unit with a misspelt directive (KilMode=)"
fi
sed 's/^Type=notify$/Type=notfy/' "$UNIT" >"$ru"
if grep -q '^Type=notfy$' "$ru" && ! analyze >/dev/null; then
    ok "a bad value (Type=notfy) fails verification"
else
    fail "verification accepted a unit with Type=notfy"
fi
cp "$UNIT" "$ru"
mv "$root/usr/bin/runnerd" "$root/usr/bin/runnerd.away"
if ! analyze >/dev/null; then
    ok "a missing ExecStart binary fails verification"
else
    fail "verification accepted a unit whose ExecStart binary is missing"
fi
mv "$root/usr/bin/runnerd.away" "$root/usr/bin/runnerd"

# ---------------------------------------------------------------- 2. exposure

sec=$(systemd-analyze security --offline=true --root="$root" --threshold=50 runnerd.service 2>&1)
rc=$?
if printf '%s\n' "$sec" | grep -qi 'unrecognized option\|unknown option'; then
    echo "skip systemd-analyze security --offline (not supported by this systemd)"
elif [ "$rc" -eq 0 ]; then
    ok "systemd-analyze security: $(printf '%s\n' "$sec" | grep 'Overall exposure' |
        sed 's/.*runnerd.service: //')"
else
    printf '%s\n' "$sec" | tail -n 5 | sed 's/^/     | /'
    fail "systemd-analyze security: exposure above 5.0 (or the check failed)"
fi

# ---------------------------------------------------------------- 3. the settings that matter

# has REGEX WHY: one line of the unit matches the extended regex REGEX in full.
has() {
    if grep -Eqx "$1" "$UNIT"; then
        ok "unit: $2"
    else
        fail "unit: $2 (no line matching '$1')"
    fi
}
# lacks REGEX WHY: no line of the unit matches REGEX in full.
lacks() {
    if grep -Eqx "$1" "$UNIT"; then
        fail "unit: $2 ($(grep -Ex "$1" "$UNIT"))"
    else
        ok "unit: $2"
    fi
}

has 'Type=notify' 'Type=notify (runnerd speaks the notify protocol)'
has 'NotifyAccess=main' 'NotifyAccess=main'
has 'WatchdogSec=[1-9][0-9]*(s|min)?' 'WatchdogSec= is set'
has 'Restart=on-failure' 'Restart=on-failure'
has 'RestartPreventExitStatus=(.* )?78( .*)?' 'exit 78 (unknown to Gitea) is never restarted'
has 'RestartForceExitStatus=(.* )?75( .*)?' 'exit 75 (detached for a restart) is always restarted'
lacks 'RestartPreventExitStatus=(.* )?75( .*)?' 'exit 75 is not in RestartPreventExitStatus'
has 'KillMode=(mixed|process)' 'KillMode signals only the daemon'
has 'TimeoutStopSec=[1-9][0-9]*(s|min|h)?' 'TimeoutStopSec= leaves time to drain'
has 'ExecReload=.*(-HUP|-s HUP|SIGHUP).*\$MAINPID' 'ExecReload sends SIGHUP'
has 'ExecStart=/usr/bin/runnerd -c /etc/runnerd/config\.yaml' \
    'ExecStart reads /etc/runnerd/config.yaml'
has 'User=runnerd' 'User=runnerd'
has 'Group=runnerd' 'Group=runnerd'
has 'SupplementaryGroups=docker' 'SupplementaryGroups=docker'
lacks 'DynamicUser=(yes|true|on|1)' 'no DynamicUser='
for d in State Cache Runtime Configuration; do
    has "${d}Directory=runnerd" "${d}Directory=runnerd"
done
for h in ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
    RestrictSUIDSGID=yes ProtectKernelTunables=yes ProtectControlGroups=yes; do
    has "$h" "$h"
done
# These would hide /dev/nvidia* or /proc/driver/nvidia from nvidia-smi and the GPU inventory.
lacks 'PrivateDevices=(yes|true|on|1)' 'no PrivateDevices= (GPUs)'
lacks 'ProtectClock=(yes|true|on|1)' 'no ProtectClock= (it closes the device list: GPUs)'
lacks 'DevicePolicy=(closed|strict)' 'no closed DevicePolicy= (GPUs)'
lacks 'ProcSubset=pid' 'no ProcSubset=pid (/proc/driver/nvidia)'
if grep -q '^RestrictAddressFamilies=' "$UNIT"; then
    if grep '^RestrictAddressFamilies=' "$UNIT" | grep -q '~'; then
        fail "unit: RestrictAddressFamilies= is a deny list; keep an allow list"
    elif grep '^RestrictAddressFamilies=' "$UNIT" | grep -q 'AF_UNIX' &&
        grep '^RestrictAddressFamilies=' "$UNIT" | grep -q 'AF_INET'; then
        ok "unit: RestrictAddressFamilies= allows AF_UNIX (docker.sock) and AF_INET (Gitea)"
    else
        fail "unit: RestrictAddressFamilies= must allow AF_UNIX and AF_INET"
    fi
fi

# ---------------------------------------------------------------- 4. the ExecStart command line

"$RUNNERD" -c "$tmp/no-such-config.yaml" >"$tmp/rd.out" 2>&1
rc=$?
if [ "$rc" -eq 2 ] && grep -q 'no-such-config.yaml' "$tmp/rd.out"; then
    ok "runnerd -c MISSING exits 2, which RestartPreventExitStatus= also holds"
else
    sed 's/^/     | /' "$tmp/rd.out"
    fail "runnerd -c MISSING: expected exit 2 naming the file, got $rc"
fi
if grep -Eqx 'RestartPreventExitStatus=(.* )?2( .*)?' "$UNIT"; then
    ok "unit: exit 2 (bad configuration) is not restarted"
else
    fail "unit: exit 2 (bad configuration) would be restarted in a loop"
fi

# ---------------------------------------------------------------- 5. sysusers.d, tmpfiles.d

sys="$tmp/sys"
mkdir -p "$sys/etc"
if systemd-sysusers --root="$sys" "$SD/runnerd.sysusers" >"$tmp/su.out" 2>&1; then
    ok "systemd-sysusers --root accepts runnerd.sysusers"
else
    sed 's/^/     | /' "$tmp/su.out"
    fail "systemd-sysusers --root failed on runnerd.sysusers"
fi
if grep -q 'runnerd.sysusers:[0-9]' "$tmp/su.out"; then
    sed 's/^/     | /' "$tmp/su.out"
    fail "systemd-sysusers complained about a line of runnerd.sysusers"
fi
pw=$(grep '^runnerd:' "$sys/etc/passwd" 2>/dev/null)
uid=$(printf '%s' "$pw" | cut -d: -f3)
gid=$(printf '%s' "$pw" | cut -d: -f4)
pwre='runnerd:x:[0-9]+:[0-9]+:[^:]*:/var/lib/runnerd:/usr/sbin/nologin'
if printf '%s\n' "$pw" | grep -Eqx "$pwre" && [ "$uid" -lt 1000 ]; then
    ok "sysusers: system user runnerd (uid $uid), home /var/lib/runnerd, no login shell"
else
    fail "sysusers: no system user runnerd, home /var/lib/runnerd, in the temp passwd: '$pw'"
fi
if [ -n "$gid" ] && grep -Eqx "runnerd:x:$gid:.*" "$sys/etc/group"; then
    ok "sysusers: group runnerd (gid $gid) is the user's primary group"
else
    fail "sysusers: no group runnerd with the user's gid '$gid'"
fi
if grep -Eqx 'docker:x:[0-9]+:(.*,)?runnerd(,.*)?' "$sys/etc/group"; then
    ok "sysusers: runnerd is a member of docker"
else
    fail "sysusers: runnerd is not a member of group docker: $(grep '^docker:' "$sys/etc/group")"
fi

mode_of() { sed -n "s|^d $1 \([0-7]*\) .*|\1|p" "$SD/runnerd.tmpfiles"; }
state_mode=$(mode_of /var/lib/runnerd)
cache_mode=$(mode_of /var/cache/runnerd)
[ "$state_mode" = 0700 ] && ok "tmpfiles: state directory 0700" ||
    fail "tmpfiles: /var/lib/runnerd must be 0700 (holds the token), is '$state_mode'"
[ "$cache_mode" = 0750 ] && ok "tmpfiles: cache directory 0750" ||
    fail "tmpfiles: /var/cache/runnerd must be 0750, is '$cache_mode'"
has "StateDirectoryMode=$state_mode" 'StateDirectoryMode= matches tmpfiles.d'
has "CacheDirectoryMode=$cache_mode" 'CacheDirectoryMode= matches tmpfiles.d'

if [ "$(id -u)" -ne 0 ]; then
    echo "skip systemd-tmpfiles --create --root (needs root to chown to runnerd)"
elif systemd-tmpfiles --create --root="$sys" "$SD/runnerd.tmpfiles" >"$tmp/tf.out" 2>&1 &&
    ! [ -s "$tmp/tf.out" ]; then
    for d in /var/lib/runnerd:"${state_mode#0}" /var/cache/runnerd:"${cache_mode#0}"; do
        p=${d%%:*}
        want="${d#*:} $uid:$gid"
        got=$(stat -c '%a %u:%g' "$sys$p" 2>/dev/null)
        if [ "$got" = "$want" ]; then
            ok "tmpfiles: $p is $got"
        else
            fail "tmpfiles: $p is '$got', expected '$want'"
        fi
    done
else
    sed 's/^/     | /' "$tmp/tf.out"
    fail "systemd-tmpfiles --create --root failed on runnerd.tmpfiles"
fi

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all systemd checks passed"
