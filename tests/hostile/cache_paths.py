#!/usr/bin/env python3
"""Hostile workflows, the actions/cache server (doc/cache.md): a job of runnerd (the Gitea double,
the node test image, runnerd's own cache server) uses its token from ACTIONS_CACHE_URL to reach
runnerd's state through the server: its state database (which holds the cache index), its
cache.key, the blobs of the cache directory, /etc/passwd.

  paths    path traversal in the download id (`artifacts/..%2f..%2fstate.db`, literal `..`,
           `%2e%2e`, double encoding, a NUL, a valid id followed by `/../..`), in the upload
           and commit ids (`caches/..%2fstate.db`), at the server's root (`/state.db`,
           `/cache.key`, `/TOKEN/../../state.db`), and in keys and versions (`..%2f..`): none is
           answered with a file's bytes (no SQLite header, no key, no passwd line); a key and
           a version made of `../` are stored and found as data. A control download of the
           job's own entry (200, its bytes) shows the probe reaches the server. Afterwards the
           state database passes `PRAGMA integrity_check`, the key is unchanged and the cache
           directory holds only blobs named by id.
  lifetime the job's token expires runner.timeout (1m here) plus 10 minutes after it was
           minted, however long the job asks for (its `exp` claim; the server's refusal of an
           expired token is tests/cache/isolation.py's).

Environment: RUNNERCTL, RUNNERD, SRCDIR."""
import base64
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "e2e"))
import lib  # noqa: E402

T = lib.Tally(keep=3000, flush=True)
check = T.check

# The attacks, run in the job container: each prints "attack NAME: STATUS LEN FLAGS" where
# FLAGS says whether the body held a file's bytes.
PROBE = r"""
'use strict';
const http = require('http');
const base = new URL(process.env.ACTIONS_CACHE_URL);
const P = base.pathname + '_apis/artifactcache/';
const tok = base.pathname.split('/')[1];
function req(method, path, headers, body) {
  return new Promise((resolve) => {
    const r = http.request({ host: base.hostname, port: base.port, method, path,
      headers: Object.assign({ Accept: 'application/json;api-version=6.0-preview.1' },
                             headers || {}) },
      (res) => { const b = []; res.on('data', (d) => b.push(d));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(b) })); });
    r.on('error', (e) => resolve({ status: 'error ' + e.code, body: Buffer.alloc(0) }));
    if (body) r.write(body);
    r.end();
  });
}
function flags(b) {
  const s = b.toString('latin1');
  return (s.includes('SQLite format 3') ? ' sqlite' : '') +
         (/^[0-9a-f]{64}\n?$/.test(s) ? ' key' : '') + (s.includes('root:x:0:0') ? ' passwd' : '');
}
async function attack(name, method, path, headers, body) {
  const r = await req(method, path, headers, body);
  console.log('attack ' + name + ': ' + r.status + ' ' + r.body.length + flags(r.body));
  return r;
}
(async () => {
  const look = await req('GET', P + 'cache?keys=legit&version=e2e-tar-1');
  const e = JSON.parse(look.body.toString());
  const loc = new URL(e.archiveLocation);
  const q = loc.search;
  const id = loc.pathname.split('/').pop();
  const c = await req('GET', loc.pathname + q);
  console.log('control: ' + c.status + (c.body.includes('legit-bytes') ? ' legit-bytes' : ''));
  const A = P + 'artifacts/';
  const j = { 'Content-Type': 'application/json' };
  const up = { 'Content-Type': 'application/octet-stream', 'Content-Range': 'bytes 0-3/*' };
  for (const [n, p] of [
    ['enc', A + '..%2f..%2f..%2fstate.db' + q], ['enc4', A + '..%2f..%2f..%2f..%2fstate.db' + q],
    ['literal', A + '../../../state.db' + q],
    ['dots', A + '%2e%2e%2f%2e%2e%2f%2e%2e%2fstate.db' + q],
    ['double', A + '%252e%252e%252f%252e%252e%252fstate.db' + q],
    ['id-then', A + id + '%2f..%2f..%2f..%2fstate.db' + q],
    ['id-slash', A + id + '/../../../state.db' + q],
    ['nul', A + id + '%00' + q], ['key', A + '..%2f..%2f..%2fcache.key' + q],
    ['passwd', A + '..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd' + q],
    ['abs', A + '%2fetc%2fpasswd' + q],
    ['no-token', '/_apis/artifactcache/artifacts/..%2f..%2fstate.db' + q],
    ['no-token-id-then', loc.pathname + '%2f..%2f..%2f..%2fstate.db' + q],
    ['no-token-id-slash', loc.pathname + '/../../../state.db' + q],
    ['root-state', '/state.db'], ['root-key', '/cache.key'], ['root-blob', '/blobs/' + id],
    ['tok-up', '/' + tok + '/../../state.db'], ['up', '/../../../state.db'],
    ['lookup', P + 'cache?keys=..%2f..%2f..%2fstate.db&version=..%2f..%2f..%2fstate.db'],
    ['list', P + 'caches?key=..%2f..%2f..%2fstate.db']]) {
    await attack(n, 'GET', p);
  }
  await attack('patch', 'PATCH', P + 'caches/..%2f..%2f..%2fstate.db', up, 'PWND');
  await attack('patch-literal', 'PATCH', P + 'caches/../../../state.db', up, 'PWND');
  await attack('commit', 'POST', P + 'caches/..%2f..%2f..%2fstate.db', j, '{"size":4}');
  await attack('commit-abs', 'POST', P + 'caches/%2ftmp%2fx', j, '{"size":4}');
  // A key and a version made of ../: stored as data, found as data.
  const tkey = '../../../state.db', tver = '../../../../cache.key';
  let r = await req('POST', P + 'caches', j,
                    JSON.stringify({ key: tkey, version: tver, cacheSize: 4 }));
  const tid = JSON.parse(r.body.toString()).cacheId;
  await req('PATCH', P + 'caches/' + tid, up, 'PWND');
  r = await req('POST', P + 'caches/' + tid, j, '{"size":4}');
  r = await req('GET', P + 'cache?keys=' + encodeURIComponent(tkey) + '&version=' +
                encodeURIComponent(tver));
  const t2 = new URL(JSON.parse(r.body.toString()).archiveLocation);
  r = await req('GET', t2.pathname + t2.search);
  console.log('traversal-key: ' + r.status + ' ' + r.body.toString());
})().catch((e) => { console.log('probe: ' + e); process.exit(1); });
"""

SAVE = r"""echo %s | base64 -d > /tmp/probe.js
echo %s | base64 -d > /tmp/client.js
mkdir -p legit && echo legit-bytes > legit/f
node /tmp/client.js save legit legit
node /tmp/probe.js
tok=${ACTIONS_CACHE_URL%%/}; tok=${tok##*/}
echo "claims ${tok%%%%.*}"
"""


def main():
    image, err = lib.test_image("node")
    if image is None:
        print("SKIP: the node test image cannot be built: " + err.strip())
        return 0
    tmp = tempfile.mkdtemp(prefix="runnerd-hostile-cache-")
    d = lib.Double(tmp)
    r = lib.Runner(d, tmp, "cpaths", image, extra="  timeout: 1m\n",
                   label="matric-builder:docker://" + image)
    cdir = os.path.join(r.dir, "cache")
    with open(r.config, "a") as f:
        f.write("  cache_dir: %s\n" % cdir)
    r.start()
    try:
        with open(os.path.join(lib.SRC, "tests", "e2e", "cache_client.js"), "rb") as f:
            client = f.read()
        script = SAVE % (base64.b64encode(PROBE.encode()).decode(),
                         base64.b64encode(client).decode())
        before = time.time()
        j = lib.enqueue(d, [{"name": "attacks", "shell": "sh", "run": script}])
        t = lib.final_task(d, j, 180)
        after = time.time()
        rows = lib.rows_of(t) if t else []
        text = "\n".join(rows)
        check("the job ran its probes", t and t["status"] == "success" and
              any(x.startswith("cache saved legit (") for x in rows),
              text + r.log_text()[-3000:])
        check("control: the job's own entry downloads (200, its bytes)",
              "control: 200 legit-bytes" in rows, text)
        attacks = dict(re.match(r"attack (\S+): (.*)$", x).groups()
                       for x in rows if x.startswith("attack "))
        check("every attack was made", len(attacks) == 25, text)
        allowed = {"lookup": {"204"}, "list": {"200"}}
        for name, res in sorted(attacks.items()):
            status = res.split()[0]
            leaked = [f for f in ("sqlite", "key", "passwd") if f in res.split()[2:]]
            check("%s: no file's bytes, no success (%s)" % (name, res),
                  not leaked and (status in allowed.get(name, ()) or not status.startswith("2")),
                  res)
        check("a key and a version made of ../ are stored and found as data",
              "traversal-key: 200 PWND" in rows, text)
        m = next((re.match(r"claims (\S+)$", x) for x in rows if x.startswith("claims ")), None)
        c = None
        if m and m.group(1) != "***":
            p = m.group(1)
            c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        check("lifetime: the token expires runner.timeout (60 s) + 600 s after it was minted",
              c and int(before) + 660 <= c.get("exp", 0) <= int(after) + 661, "%s, job %d..%d"
              % (c, before, after))
        r.stop()
        db = sqlite3.connect(r.state)
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        n = db.execute("SELECT count(*) FROM cache_entries WHERE committed").fetchone()[0]
        db.close()
        check("the state database is intact, its index holds the two entries",
              ok == "ok" and n == 2, "%s, %d entries" % (ok, n))
        with open(os.path.join(r.dir, "cache.key")) as f:
            check("the cache key is a key still",
                  re.match(r"[0-9a-f]{64}\n$", f.read()) is not None)
        found = []
        for root, dirs, files in os.walk(os.path.join(cdir, "actions-cache")):
            found += [os.path.relpath(os.path.join(root, f), cdir) for f in files]
        check("the cache directory holds only blobs named by id",
              found and all(re.match(r"actions-cache/blobs/\d+$", x) for x in found), str(found))
        stray = [x for x in os.listdir(r.dir) if "PWND" in x or x in ("x", "tmp")]
        check("nothing new beside the state database", not stray, str(stray))
    finally:
        r.stop()
        d.stop()
        lib.remove_leftovers(tmp)
        if T.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    print("%d failed" % T.failures if T.failures else "hostile-cache_paths: all checks passed")
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
