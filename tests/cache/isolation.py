#!/usr/bin/env python3
"""Isolation between jobs of the cache server (doc/cache.md "Scope"), each attack against a
real `runnerctl cache serve`:
- repo B cannot read repo A's entry (204), cannot upload to or commit A's reservation (404),
  and saving the same key in B leaves A's bytes as they were;
- a fork PR (ref refs/pull/7/merge, default branch main) reads main's entries, but what it
  saves is invisible to main, its save of main's key does not replace main's, and it cannot
  write into main's reservation; its own entry comes first for itself;
- no token, a malformed one, a tampered payload (ref changed, signature kept), a token of
  another key and an expired token are all 401;
- a download URL opens its own entry only: another id, a changed exp or sig, no sig: refused.
Without the repo/ref checks (e.g. own_reservation() returning 0 for any entry, or the lookup
ignoring the repo), the "cannot" checks fail."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import toolkit_client as tk  # noqa: E402


def tamper(token, **claims):
    payload, sig = token.split(".")
    pad = "=" * (-len(payload) % 4)
    j = json.loads(base64.urlsafe_b64decode(payload + pad))
    j.update(claims)
    p2 = base64.urlsafe_b64encode(json.dumps(j, separators=(",", ":"), sort_keys=True).encode())
    return p2.decode().rstrip("=") + "." + sig


def statuses(c, aid, ver, key):
    """The statuses client c gets for a lookup of deps-1, a reservation of key and an upload
    into the reservation aid, in that order."""
    return (c.get_cache_entry(["deps-1"], ver).status, c.reserve(key, ver).status,
            c.upload_chunk(aid, b"x", 0).status)


def main():
    t = tk.Checks()
    tmp = tempfile.mkdtemp(prefix="cache-isolation-")
    srv = tk.Server(tmp).start()
    ver = tk.cache_version(["node_modules"])
    try:
        a = srv.client("owner/a", "refs/heads/main")
        b = srv.client("owner/b", "refs/heads/main")
        secret = b"A's build output"
        cid, r = a.save("deps-1", ver, secret)
        t.check("A saves deps-1", r.status // 100 == 2, r.status)

        r = b.get_cache_entry(["deps-1", "deps-"], ver)
        t.check("B cannot read A's entry (204)", r.status == 204, (r.status, r.body))

        # A reservation of A's, attacked by B.
        r = a.reserve("deps-2", ver, 4)
        aid = (r.json() or {}).get("cacheId")
        t.check("A reserves deps-2", r.status == 200 and aid, r.body)
        r = b.upload_chunk(aid, b"evil", 0)
        t.check("B cannot upload into A's reservation (404)", r.status == 404, r.status)
        r = b.commit(aid, 4)
        t.check("B cannot commit A's reservation (404)", r.status == 404, r.status)
        r = a.upload_chunk(aid, b"good", 0)
        t.check("A's own upload still works", r.status // 100 == 2, r.status)
        r = a.commit(aid, 4)
        t.check("A's own commit still works", r.status // 100 == 2, (r.status, r.body))

        cid, r = b.save("deps-1", ver, b"B's poison")
        t.check("B may save deps-1 in its own repo", r.status // 100 == 2, r.status)
        e, body = a.restore(["deps-1"], ver)
        t.check("A still reads its own deps-1", body == secret, body)
        e, body = b.restore(["deps-1"], ver)
        t.check("B reads its own deps-1", body == b"B's poison", body)

        # The repo is case-folded: Owner/A is owner/a.
        a2 = srv.client("Owner/A", "refs/heads/main")
        e, body = a2.restore(["deps-1"], ver)
        t.check("repo names are case-insensitive", body == secret, body)

        # Fork PR against A: reads main, writes only its own ref.
        pr = srv.client("owner/a", "refs/pull/7/merge", "refs/heads/main")
        e, body = pr.restore(["deps-1"], ver)
        t.check("a PR reads the default branch's entry", body == secret and
                e["scope"] == "refs/heads/main", e)
        cid, r = pr.save("pr-only", ver, b"from the fork")
        t.check("a PR saves under its own ref", r.status // 100 == 2, r.status)
        r = a.get_cache_entry(["pr-only"], ver)
        t.check("main cannot see what the PR saved", r.status == 204, r.status)
        cid, r = pr.save("deps-1", ver, b"fork poison")
        t.check("the PR may save deps-1 under its own ref", r.status // 100 == 2, r.status)
        e, body = a.restore(["deps-1"], ver)
        t.check("main's deps-1 is unchanged by the PR's save", body == secret, body)
        e, body = pr.restore(["deps-1"], ver)
        t.check("the PR reads its own ref first", body == b"fork poison" and
                e["scope"] == "refs/pull/7/merge", e)
        r = a.reserve("deps-3", ver)
        mid = (r.json() or {}).get("cacheId")
        r = pr.upload_chunk(mid, b"x", 0)
        t.check("a PR cannot upload into main's reservation (404)", r.status == 404, r.status)
        r = pr.commit(mid, 1)
        t.check("a PR cannot commit main's reservation (404)", r.status == 404, r.status)
        # A token whose ref is main but whose default is the PR does not read the PR's.
        r = srv.client("owner/a", "refs/heads/main", "refs/heads/main").get_cache_entry(
            ["pr-only"], ver)
        t.check("the PR's entries are not in main's scope", r.status == 204, r.status)

        # 401s.
        good = srv.token("owner/a", "refs/heads/main")
        for name, tok in (("no token", None), ("a malformed token", "garbage"),
                          ("a tampered payload (ref)", tamper(good, ref="refs/heads/x")),
                          ("a tampered payload (repo)", tamper(good, repo="owner/b")),
                          ("an empty signature", good.split(".")[0] + ".")):
            got = statuses(tk.Client(srv.base, tok), aid, ver, "zzz")
            t.check("%s: 401 on lookup, reserve and upload" % name, got == (401, 401, 401), got)
        other_key = os.path.join(tmp, "other.key")
        with open(other_key, "w") as f:
            f.write("11" * 32 + "\n")
        os.chmod(other_key, 0o600)
        c = tk.Client(srv.base, srv.token("owner/a", "refs/heads/main", key_file=other_key))
        r = c.get_cache_entry(["deps-1"], ver)
        t.check("a token of another key: 401", r.status == 401, r.status)
        c = tk.Client(srv.base, srv.token("owner/a", "refs/heads/main", ttl=1))
        time.sleep(2.2)
        r = c.get_cache_entry(["deps-1"], ver)
        t.check("an expired token: 401", r.status == 401 and b"expired" in r.body,
                (r.status, r.body))

        # The token in ACTIONS_CACHE_URL's path ("/TOKEN/_apis/..."): runnerd's jobs keep
        # Gitea's ACTIONS_RUNTIME_TOKEN as the bearer (for artifacts) and carry ours in the URL.
        gitea_bearer = "gitea-runtime-token-not-ours"
        inurl = tk.Client(srv.base + srv.token("owner/a", "refs/heads/main") + "/", gitea_bearer)
        _, body = inurl.restore(["deps-1"], ver)
        t.check("a token in the URL's path reads its repo's entry (the bearer ignored)",
                body == secret, body)
        _, r = inurl.save("in-url", ver, b"saved through the URL's token")
        t.check("a token in the URL's path saves", r.status // 100 == 2, r.status)
        _, body = a.restore(["in-url"], ver)
        t.check("what it saved is in its repo and ref", body == b"saved through the URL's token",
                body)
        b_in_url = tk.Client(srv.base + srv.token("owner/b", "refs/heads/main") + "/",
                             srv.token("owner/a", "refs/heads/main"))
        r = b_in_url.get_cache_entry(["in-url"], ver)
        t.check("the URL's token wins over a valid bearer of another repo (204)",
                r.status == 204, r.status)
        for name, seg in (("a tampered", tamper(good, repo="owner/b")), ("a garbage", "x" * 40)):
            got = statuses(tk.Client(srv.base + seg + "/", good), aid, ver, "zzz2")
            t.check("%s token in the URL: 401 even with a good bearer" % name,
                    got == (401, 401, 401), got)

        # Download URLs.
        r = a.get_cache_entry(["deps-1"], ver)
        loc = r.json()["archiveLocation"]
        u = urllib.parse.urlsplit(loc)
        q = dict(urllib.parse.parse_qsl(u.query))
        e2 = a.get_cache_entry(["deps-2"], ver).json()
        id2 = urllib.parse.urlsplit(e2["archiveLocation"]).path.rsplit("/", 1)[1]
        base = "%s://%s%s" % (u.scheme, u.netloc, u.path.rsplit("/", 1)[0])
        t.check("the URL opens its entry", a.download(loc).body == secret)
        for name, url, want in (
                ("another entry's id", "%s/%s?%s" % (base, id2, u.query), (404,)),
                ("a later exp", "%s?exp=%d&sig=%s" % (loc.split("?")[0], int(q["exp"]) + 1000,
                                                     q["sig"]), (404,)),
                # (its first character replaced by another: "A" + sig[1:] is the same
                # signature once in 64 runs)
                ("a changed sig", "%s?exp=%s&sig=%s" % (loc.split("?")[0], q["exp"],
                                                       "BA"[q["sig"][0] == "B"] + q["sig"][1:]),
                 (404,)),
                ("no sig", "%s?exp=%s" % (loc.split("?")[0], q["exp"]), (401,)),
                ("no query", loc.split("?")[0], (401,))):
            d = a.download(url)
            t.check("a download URL with %s is refused" % name,
                    d.status in want and secret not in d.body, (d.status, d.body[:80]))
        t.check("the server is still running", srv.alive())
    finally:
        srv.stop()
    log = srv.logtext()
    t.check("no token reaches the log", good not in log and good.split(".")[1] not in log)
    return t.finish(log, tmp)


if __name__ == "__main__":
    sys.exit(main())
