#!/usr/bin/env python3
"""CTest wrapper: runs the Gitea server double's self-test (tests/servers/gitea-double/test_double.py)."""
import os
import subprocess
import sys

src = os.environ.get("SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.exit(subprocess.call([sys.executable, os.path.join(src, "tests", "servers", "gitea-double", "test_double.py")], timeout=300))
