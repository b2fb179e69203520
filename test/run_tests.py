#!/usr/bin/env python3
"""make test: builds t2v in its variants, runs the C unit tests, cross-checks every stage against the tensors
Diffusers produced (../shared/golden, or T2V_GOLDEN=DIR), and checks the command line on bad input.

Every comparison prints its max and mean error and its bound. The last line is `N passed, N failed` (with
`, N skipped` when a tool or the golden data is missing); any failure makes the exit status 1. Missing golden
data is a loud skip, and a failure under CI=true."""
import os
import subprocess
import sys
import time
import traceback

import cli_checks
import golden_checks
import harness as T


def build(name, cc, flags):
    exe = os.path.join(T.OUT, name)
    cmd = [cc] + T.WARN + flags + ["-o", exe, os.path.join(T.ROOT, "t2v.c"), os.path.join(T.ROOT, "tokenizer.c"), "-lm"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    warnings = p.stderr.strip()
    T.record(f"build {name}: {' '.join([cc] + flags)}", p.returncode == 0 and not warnings,
             "(warnings: " + warnings[:300] + ")" if warnings else "")
    return exe if p.returncode == 0 else None


def run_unit_tests(unit):
    """test_kernels prints one line per check, ending in OK or FAIL: each counts as a check here; its exit status
    counts as one more, so that a crash part-way through fails even when every printed line was OK."""
    p = T.run([unit, T.GOLDEN_ROOT], cwd=T.ROOT, env={"OMP_NUM_THREADS": "2"}, expect_ok=False)
    print(p.stdout.rstrip())
    for line in p.stdout.splitlines():
        words = line.split()
        if words and words[-1] in ("OK", "FAIL"):
            T.count("C unit test: " + line.split(" max err")[0].strip(), words[-1] == "OK")
        if line.startswith("!! no golden data"):
            T.skip("C unit tests: noise and scheduler cross-checks", "no golden data")
    stderr = p.stderr.strip()
    T.record("C unit tests: test_kernels exit status", p.returncode == 0,
             f"exit {p.returncode}" + (f": {stderr[-300:]}" if p.returncode and stderr else ""))


def golden_data_missing():
    print("\n" + "!" * 100)
    print(f"!! NO GOLDEN DATA at {T.GOLDEN}: the cross-checks against Diffusers were NOT run.")
    print("!! Put the reference tensors beside the checkout (../shared/golden) or set T2V_GOLDEN=DIR.")
    print("!" * 100)
    if os.environ.get("CI") == "true":
        T.record("golden data present (required under CI=true)", False, T.GOLDEN)
    else:
        T.skip("golden cross-checks against Diffusers", f"no golden data at {T.GOLDEN}")


def run_checks():
    T.section("builds")
    exes = {"plain": build("t2v-plain", T.CC, T.CFLAGS), "omp": build("t2v-omp", T.CC, T.CFLAGS + ["-fopenmp"])}
    for other in ("clang", "gcc"):
        if os.path.basename(T.CC) == other:
            continue
        if T.have(other):
            exes[other] = build(f"t2v-{other}", other, T.CFLAGS)
        else:
            T.skip(f"build t2v-{other}", f"{other} not installed")
    if T.have("tcc"):
        exes["tcc"] = build("t2v-tcc", "tcc", ["-O2"])
    else:
        T.skip("build t2v-tcc", "tcc not installed: the Tiny C Compiler build is not checked (apt-get install tcc)")
    unit = os.path.join(T.OUT, "test_kernels")
    p = T.run([T.CC] + T.WARN + ["-Wno-unused-function"] + T.CFLAGS + ["-fopenmp", "-o", unit,
              os.path.join(T.ROOT, "test", "test_kernels.c"), os.path.join(T.ROOT, "tokenizer.c"), "-lm"])
    if not exes["omp"] or p.returncode != 0:
        print("cannot continue without a build")
        return

    T.section("C unit tests")
    run_unit_tests(unit)

    if os.path.isdir(T.GOLDEN):
        golden_checks.run_all(exes)
    else:
        golden_data_missing()
    cli_checks.run_all(exes)


def main():
    os.makedirs(T.OUT, exist_ok=True)
    t0 = time.time()
    try:
        run_checks()
    except Exception:  # a check that crashes is a failure, and the summary line still comes last
        traceback.print_exc()
        T.record("the checks ran to the end", False, "(exception above)")
    print(f"\n{time.time() - t0:.0f} s" + ("; failed: " + ", ".join(T.failures) if T.failures else ""))
    print(T.summary())
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
