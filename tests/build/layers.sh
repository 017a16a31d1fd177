#!/bin/sh
# The layering of daemon/ (doc/architecture.md, "The dependency rule"), checked on the build:
# - each folder's compile commands put on the include path only folders it may use;
# - an include that points up does not compile (one per layer, each against the layer just above
#   it), while an include of a layer below does (the control);
# - no object of one folder references a symbol defined in a folder it may not use, so no call
#   goes up or sideways through a hand-written extern, and there is no call cycle between folders.
set -u
: "${SRCDIR:?}" "${BINDIR:?}"
exec python3 - "$SRCDIR" "$BINDIR" <<'PY'
import json, os, re, shlex, subprocess, sys, tempfile

src, bindir = sys.argv[1], sys.argv[2]
# What each folder may use: the layers below it (doc/architecture.md), transitively.
MAY = {
    "base": set(),
    "net": {"base"},
    "docker": {"base", "net"},
    "cache": {"base", "net"},
    "workflow": {"base"},
    "scm": {"base"},
    "state": {"base", "workflow", "docker", "net"},
    "exec": {"base", "net", "docker", "workflow", "state", "scm"},
    "job": {"base", "net", "docker", "workflow", "state", "scm", "exec", "cache"},
    "service": {"base", "net", "docker", "workflow", "state", "scm", "exec", "job", "cache"},
    "cli": {"base", "net", "docker", "workflow", "state", "scm", "exec", "job", "cache"},
}
# For each layer, a header of a layer it may not use (the one above it, or a peer).
UP = {"base": "httpc.h", "net": "docker.h", "docker": "config.h", "workflow": "store.h",
      "scm": "wf.h", "state": "executor.h", "exec": "jobrun.h", "job": "task.h",
      "service": "cmd.h", "cli": "task.h"}
DOWN = {"net": "runner/buf.h", "docker": "httpc.h", "workflow": "mask.h", "scm": "fstree.h",
        "state": "wf.h", "exec": "config.h", "job": "executor.h", "service": "launch.h",
        "cli": "launch.h"}
UP["cache"], DOWN["cache"] = "store.h", "httpc.h"  # the cache server: base and net only
fails = 0

def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        fails += 1

db = json.load(open(os.path.join(bindir, "compile_commands.json")))
daemon = os.path.join(src, "daemon") + "/"
by_folder = {}
for c in db:
    f = c["file"]
    if f.startswith(daemon):
        by_folder.setdefault(f[len(daemon):].split("/")[0], c)
check(set(by_folder) == set(MAY), "every daemon/ folder is a layer: %s" % sorted(by_folder))

for layer, c in sorted(by_folder.items()):
    argv = shlex.split(c["command"]) if "command" in c else c["arguments"]
    incs = {a[2:] for a in argv if a.startswith("-I")}
    seen = {p[len(daemon):] for p in incs if p.startswith(daemon)}
    check(seen - {layer} <= MAY[layer],
          "%s sees %s (may: %s)" % (layer, sorted(seen - {layer}), sorted(MAY[layer])))
    flags = [a for a in argv if a.startswith(("-I", "-D", "-std"))]
    with tempfile.TemporaryDirectory() as tmp:
        def compiles(header):
            tu = os.path.join(tmp, "tu.c")
            with open(tu, "w") as f:
                f.write('#include "%s"\n' % header)
            r = subprocess.run(["cc", "-fsyntax-only"] + flags + [tu], capture_output=True,
                               text=True, cwd=c["directory"])
            return r.returncode == 0, r.stderr
        ok, err = compiles(UP[layer])
        check(not ok and re.search(r"%s: No such file" % re.escape(UP[layer]), err) is not None,
              "%s: #include \"%s\" (a layer it may not use) does not compile" % (layer, UP[layer]))
        if layer in DOWN:
            ok, err = compiles(DOWN[layer])
            check(ok, "%s: #include \"%s\" (a layer below) compiles %s" % (layer, DOWN[layer],
                                                                          err.strip()[:200]))

# Symbols: which folder defines what, and who references it.
defs, uses = {}, []
for root, _, files in os.walk(os.path.join(bindir, "daemon", "CMakeFiles")):
    for name in files:
        if not name.endswith(".o"):
            continue
        obj = os.path.join(root, name)
        rel = obj.split(".dir/", 1)[1]
        folder = rel.split("/")[0]
        if folder not in MAY:
            continue
        out = subprocess.run(["nm", obj], capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDBR":
                defs[f[2]] = folder
            elif len(f) == 2 and f[0] == "U":
                uses.append((folder, f[1], rel))
check(len(defs) > 500, "symbols read from the daemon's objects: %d" % len(defs))
bad = sorted({(fo, sym, defs[sym], rel) for fo, sym, rel in uses
              if sym in defs and defs[sym] != fo and defs[sym] not in MAY[fo]})
for fo, sym, to, rel in bad[:20]:
    print("     %s calls %s of %s" % (rel, sym, to))
check(not bad, "no folder references a symbol of a folder it may not use (%d found)" % len(bad))
sys.exit(1 if fails else 0)
PY
