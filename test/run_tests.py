#!/usr/bin/env python3
"""make test: builds t2v in its variants, runs the C unit tests, cross-checks every stage against the tensors
Diffusers produced (../shared/golden, or T2V_GOLDEN=DIR), and checks the command line on bad input.

Every comparison prints its max and mean error and its bound; any failure makes the run fail."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "out")
GOLDEN_ROOT = os.environ.get("T2V_GOLDEN", os.path.join(ROOT, "..", "shared", "golden"))
GOLDEN = os.path.join(GOLDEN_ROOT, "tiny")
PY = sys.executable
CC = os.environ.get("CC", "cc")
CFLAGS = os.environ.get("CFLAGS", "-O3 -march=native").split()
WARN = ["-std=c99", "-Wall", "-Wextra", "-pedantic"]

failures = []


def section(title):
    print(f"\n== {title}", flush=True)


def record(name, ok, detail=""):
    print(f"  {name:58s} {detail} {'OK' if ok else 'FAIL'}", flush=True)
    if not ok:
        failures.append(name)


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
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, **kw)
    if expect_ok and p.returncode != 0:
        print(f"  command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
        failures.append(" ".join(cmd[:2]))
    return p


def build(name, cc, flags):
    exe = os.path.join(OUT, name)
    cmd = [cc] + WARN + flags + ["-o", exe, os.path.join(ROOT, "t2v.c"), os.path.join(ROOT, "tokenizer.c"), "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    warnings = p.stderr.strip()
    record(f"build {name}: {' '.join([cc] + flags)}", p.returncode == 0 and not warnings,
           "(warnings: " + warnings[:300] + ")" if warnings else "")
    return exe if p.returncode == 0 else None


def have(tool):
    return shutil.which(tool) is not None


def main():
    os.makedirs(OUT, exist_ok=True)
    t0 = time.time()

    section("builds")
    exes = {"plain": build("t2v-plain", CC, CFLAGS), "omp": build("t2v-omp", CC, CFLAGS + ["-fopenmp"])}
    for other in ("clang", "gcc"):
        if have(other) and os.path.basename(CC) != other:
            exes[other] = build(f"t2v-{other}", other, CFLAGS)
    if have("tcc"):
        exes["tcc"] = build("t2v-tcc", "tcc", ["-O2"])
    else:
        print("  tcc not installed: the Tiny C Compiler build is not checked (apt-get install tcc)")
    unit = os.path.join(OUT, "test_kernels")
    p = run([CC] + WARN + ["-Wno-unused-function"] + CFLAGS + ["-fopenmp", "-o", unit,
            os.path.join(ROOT, "test", "test_kernels.c"), os.path.join(ROOT, "tokenizer.c"), "-lm"])
    t2v = exes["omp"]
    if not t2v or p.returncode != 0:
        print("cannot continue without a build")
        return 1

    section("C unit tests")
    p = run([unit, GOLDEN_ROOT], cwd=ROOT, env={"OMP_NUM_THREADS": "2"})
    print(p.stdout.rstrip())
    if p.returncode != 0:
        failures.append("C unit tests")

    import golden_checks
    import cli_checks
    if os.path.isdir(GOLDEN):
        golden_checks.run_all(sys.modules[__name__], exes)
    else:
        print("\n" + "!" * 100)
        print(f"!! NO GOLDEN DATA at {GOLDEN}: the cross-checks against Diffusers were NOT run.")
        print("!! Put the reference tensors beside the checkout (../shared/golden) or set T2V_GOLDEN=DIR.")
        print("!" * 100)
    cli_checks.run_all(sys.modules[__name__], exes)

    print(f"\n{len(failures)} failure(s) in {time.time() - t0:.0f} s" + (": " + ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
