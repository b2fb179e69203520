#!/usr/bin/env python3
"""make cross-test: the golden cross-checks with t2v built by Debian's cross compilers and run under qemu-user,
on aarch64 and on s390x (big-endian: the model file and .npy are little-endian, so every load swaps). The
machines run side by side (qemu-user is single-threaded), each in its own process and folder
(test/out-cross/ARCH); the last line is `N passed, N failed[, N skipped]` over both.

i686 works the same way (gcc-i686-linux-gnu, qemu-i386) but is left out of CI for time; run it with
    /usr/bin/python3 test/cross_test.py i686"""
import os
import re
import stat
import subprocess
import sys
import time

import golden_checks
import int8_checks
import harness as T

MACHINES = {"aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64"), "s390x": ("s390x-linux-gnu-gcc", "qemu-s390x"),
            "i686": ("i686-linux-gnu-gcc", "qemu-i386")}


def build(arch):
    """a static t2v for arch and a wrapper script that runs it under qemu, or None"""
    cc, qemu = MACHINES[arch]
    if not T.have(cc) or not T.have(qemu):
        missing = " and ".join(t for t in (cc, qemu) if not T.have(t))
        if os.environ.get("CI") == "true":
            T.record(f"{arch}: {missing} installed (required under CI=true)", False)
        else:
            T.skip(f"golden checks on {arch}", f"{missing} not installed (apt-get install qemu-user gcc-{arch}-linux-gnu)")
        return None
    exe = os.path.join(T.OUT, f"t2v-{arch}")
    p = subprocess.run([cc] + T.WARN + ["-O2", "-static", "-o", exe, os.path.join(T.ROOT, "t2v.c"),
                                        os.path.join(T.ROOT, "tokenizer.c"), "-lm"], capture_output=True, text=True)
    T.record(f"{arch}: build with {cc} -O2 -static", p.returncode == 0 and not p.stderr.strip(), p.stderr.strip()[:300])
    if p.returncode != 0:
        return None
    wrapper = os.path.join(T.OUT, f"t2v-{arch}.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec {qemu} "{exe}" "$@"\n')
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
    machine = subprocess.run([wrapper, "--help"], capture_output=True, text=True)
    T.record(f"{arch}: runs under {qemu}", machine.returncode == 0 and "usage" in machine.stdout)
    return wrapper


def run_arch(arch, root):
    T.section(f"{arch} (cross-compiled, qemu-user)")
    T.OUT = os.path.join(root, arch)
    os.makedirs(T.OUT, exist_ok=True)
    t0 = time.time()
    t2v = build(arch)
    if not t2v:
        return
    model = golden_checks.export_tiny()
    golden_checks.check_tokenizer(t2v, model)
    golden_checks.check_text(t2v, model)
    g = os.path.join(T.GOLDEN, "unet")
    out = golden_checks.unet_run(t2v, model, "cross")  # once: thread counts and builds are make test's business
    if out is not None:
        T.compare("unet output vs unet/out.npy", out, golden_checks.np.load(os.path.join(g, "out.npy")), rel=1e-4)
    golden_checks.check_vae(t2v, model)
    golden_checks.check_pipeline(t2v, model)
    int8_model = int8_checks.export(os.path.join(T.GOLDEN, "model"), os.path.join(T.OUT, "tiny-int8.t2v"))
    if int8_model:   # the scales are byte-swapped on a big-endian host; the integer path is the portable kernel
        int8_checks.check_unet(t2v, int8_model)
    print(f"  {arch}: {time.time() - t0:.0f} s")


def run_side_by_side(arches):
    """one child process per machine; their outputs in order, then the counts summed"""
    children = [(arch, subprocess.Popen([sys.executable, os.path.abspath(__file__), arch], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)) for arch in arches]
    totals = [0, 0, 0]
    for arch, child in children:
        out = child.communicate()[0]
        lines = out.rstrip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        counts = [int(n) for n in re.findall(r"(\d+) (?:passed|failed|skipped)", lines[-1] if lines else "")]
        if child.returncode != 0 and (len(counts) < 2 or counts[1] == 0):
            counts = (counts + [0, 0])[:2]
            counts[1] += 1  # a child that died without counting its failure
            print(f"  {arch}: the checks did not finish (exit {child.returncode}) FAIL")
        for i, n in enumerate(counts[:3]):
            totals[i] += n
    line = f"{totals[0]} passed, {totals[1]} failed" + (f", {totals[2]} skipped" if totals[2] else "")
    print(line)
    return 1 if totals[1] else 0


def main():
    arches = sys.argv[1:] or ["aarch64", "s390x"]
    if len(arches) > 1:
        return run_side_by_side(arches)
    root = os.path.join(T.ROOT, "test", "out-cross")
    if not os.path.isdir(T.GOLDEN):
        if os.environ.get("CI") == "true":
            T.record("golden data present (required under CI=true)", False, T.GOLDEN)
        else:
            T.skip("cross-test golden checks", f"no golden data at {T.GOLDEN}")
        arches = []
    for arch in arches:
        run_arch(arch, root)
    print(T.summary())
    return 1 if T.failures else 0


if __name__ == "__main__":
    sys.exit(main())
