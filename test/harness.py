"""What make test's modules share: the paths and compilers, and record / compare / skip, which count every check
so that run_tests.py can end with one line `N passed, N failed[, N skipped]`."""
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.abspath(os.environ.get("T2V_TEST_OUT", os.path.join(ROOT, "test", "out")))  # make sanitize, make cross-test: their own
GOLDEN_ROOT = os.environ.get("T2V_GOLDEN", os.path.join(ROOT, "..", "shared", "golden"))
GOLDEN = os.path.join(GOLDEN_ROOT, "tiny")
PY = sys.executable
CC = os.environ.get("CC", "cc")
CFLAGS = os.environ.get("CFLAGS", "-O3 -march=native").split()
WARN = ["-std=c99", "-Wall", "-Wextra", "-pedantic"]

passed = 0
failures = []  # names of the failed checks
skipped = []  # names of the checks that could not run here


def section(title):
    print(f"\n== {title}", flush=True)


def count(name, ok):
    """Counts a check whose line is already printed (by record, or by the C unit tests themselves)."""
    global passed
    if ok:
        passed += 1
    else:
        failures.append(name)


def record(name, ok, detail=""):
    print(f"  {name:58s} {detail} {'OK' if ok else 'FAIL'}", flush=True)
    count(name, ok)


def skip(name, why):
    print(f"  {name:58s} SKIPPED: {why}", flush=True)
    skipped.append(name)


def summary():
    line = f"{passed} passed, {len(failures)} failed"
    return line + (f", {len(skipped)} skipped" if skipped else "")


def compare(name, got, ref, rel=None, abs_=None):
    """max|got - ref| <= rel * max|ref| (or <= abs_); shapes must agree."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        record(name, False, f"shape {got.shape} != reference {ref.shape}")
        return
    if ref.dtype.kind in "iu":
        bad = int(np.count_nonzero(got != ref))
        record(name, bad == 0, f"{bad} of {ref.size} integers differ;")
        return
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    bound = rel * scale if rel is not None else abs_
    err = float(diff.max()) if diff.size else 0.0
    finite = bool(np.isfinite(got).all())
    what = f"{rel:.0e}*max|ref|" if rel is not None else f"{abs_:.0e} abs"
    record(name, finite and err <= bound,
           f"max|d| {err:.2e} (rel {err / max(scale, 1e-30):.1e}) mean {float(diff.mean()):.1e} <= {what};")


def run(cmd, expect_ok=True, env=None, timeout=600, **kw):
    """Runs cmd; with expect_ok, a non-zero exit is a failed check of its own (the stderr tail is shown)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, **kw)
    if expect_ok and p.returncode != 0:
        print(f"  command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
        record(f"command {' '.join(cmd[:2])}", False, f"exit {p.returncode}")
    return p


def have(tool):
    return shutil.which(tool) is not None
