#!/usr/bin/env python3
"""make bench: how fast t2v runs the full-size ModelScope model, against the machine's FMA peak and against the real
Diffusers 0.30.3 on the same CPU. It uses the real configs with random weights (export.py --random ms-1.7b, 7 GB),
made once in weights/. Timings on a shared machine are noisy: compare ratios measured in one run, and look at the
load average printed with each stage.

For each stage: the wall time of the computation as t2v reports it (loading excluded): of the first run in a process,
which also touches the weights and scratch memory for the first time, and the min and median of the later runs,
which are what each further step of a video costs (BENCH_REPEATS processes, BENCH_RUNS runs each); the GFLOP t2v
counts from the shapes (2 x multiply-adds of convolutions, as a direct convolution does them also where Winograd's
products do fewer, of linear layers and of attention's two products, summed by T2V_PROFILE=1), GFLOP/s, the FMA peak at the same thread count measured just
before each run (the best of them; on a shared virtual machine the peak itself drifts with what other guests run),
the % of that peak, and the process's peak RSS (the mapped weights it touched included). Then the split of the default UNet forward
by kind of work, and the same UNet, VAE decode and (with BENCH_SD) SD UNet in the real Diffusers.

    make bench                           the stages below, 2 processes each running the computation twice, then
                                         Diffusers' UNet and VAE decode
    BENCH_REPEATS=3 make bench           more processes
    BENCH_RUNS=3 make bench              more runs per process (t2v ... --repeat 3)
    BENCH_THREADS=1 make bench           thread count (default: all cores)
    BENCH_DIFFUSERS=0 make bench         without the Diffusers baseline (it needs ../shared/refenv set up in
                                         BENCH_REFENV, default /tmp/refenv; minutes: one untimed call, then
                                         BENCH_DIFFUSERS_REPEATS (1) timed ones)
    BENCH_SD=1 make bench                then one Text2Video-Zero step: UNet2DConditionModel at (2,4,64,64),
                                         512x512 with guidance, on export.py --random sd-1.5 (4.3 GB, made once)
    BENCH_SD=only make bench             that stage alone
    BENCH_INT8=1 make bench              then the default UNet forward on the int8 export (export.py --random
                                         ms-1.7b --dtype int8, 1.9 GB, made once in weights/) through both
                                         --int8-math paths (the kernels' int8 table is always printed)
    BENCH_BLAS=DIR                       put DIR first on the Diffusers run's LD_LIBRARY_PATH (an unpacked OpenBLAS:
                                         Debian's torch otherwise uses netlib's reference BLAS), and time that
                                         OpenBLAS's sgemm beside t2v's matmul in the kernel table (BENCH_BLAS_LIB=FILE
                                         names another CBLAS library for that)
    OPENBLAS_CORETYPE=NAME               OpenBLAS's kernels for both; unset, bench picks them from the CPU's flags
                                         (SkylakeX with AVX-512, Haswell with AVX2): OpenBLAS 0.3.21 does not know
                                         newer Intel models and falls back to its SSE3 (Prescott) kernels there
The table is also written to test/out/bench.md.
"""
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from harness import CC, CFLAGS, OUT, ROOT, WARN

MODEL = os.environ.get("BENCH_MODEL", os.path.join(ROOT, "weights", "random-ms-1.7b.t2v"))
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 1)))
REPEATS = int(os.environ.get("BENCH_REPEATS", "2"))
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
REFENV = os.environ.get("BENCH_REFENV", "/tmp/refenv")
REPORT = []  # markdown lines for test/out/bench.md


def say(line=""):
    print(line, flush=True)
    REPORT.append(line)


def load():
    return f"load {os.getloadavg()[0]:.1f}"


def run_measured(cmd, extra_env=None, threads=THREADS):
    """(wall seconds, peak RSS in MiB, stdout, stderr) of one child process"""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **(extra_env or {}))
    with open(os.path.join(OUT, "bench_stdout"), "w+") as out, open(os.path.join(OUT, "bench_stderr"), "w+") as err:
        t0 = time.time()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.time() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if status != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{stderr}")
    return seconds, usage.ru_maxrss / 1024.0, stdout, stderr


def build(name, source_files, libs=()):
    exe = os.path.join(OUT, name)
    subprocess.run([CC] + WARN + ["-Wno-unused-function"] + CFLAGS +
                   ["-fopenmp", "-o", exe] + [os.path.join(ROOT, f) for f in source_files] + ["-lm"] + list(libs),
                   check=True)
    return exe


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_env():
    """OPENBLAS_CORETYPE for every OpenBLAS this bench runs (Diffusers' linear layers, the kernel yardstick): the
    caller's, or the kernels the CPU's flags allow. OpenBLAS 0.3.21's own detection does not know newer Intel
    models (an Emerald Rapids Xeon, family 6 model 207, got its SSE3 Prescott kernels: Diffusers' small UNet3D
    then took 14.2 s instead of 11.0 s with SkylakeX)."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        return {"OPENBLAS_CORETYPE": os.environ["OPENBLAS_CORETYPE"]}
    flags = cpu_flags()
    if "avx512f" in flags:
        return {"OPENBLAS_CORETYPE": "SkylakeX"}
    if "avx2" in flags and "fma" in flags:
        return {"OPENBLAS_CORETYPE": "Haswell"}
    return {}


def blas_library():
    """the CBLAS library the kernel table times beside t2v's matmul, or None"""
    if os.environ.get("BENCH_BLAS_LIB"):
        return os.environ["BENCH_BLAS_LIB"]
    if os.environ.get("BENCH_BLAS"):
        lib = os.path.join(os.environ["BENCH_BLAS"], "libopenblas.so.0")
        if os.path.exists(lib):
            return lib
    return None


def parse_profile(stderr):
    """T2V_PROFILE's rows: {work: (seconds, GFLOP)}"""
    rows = {}
    for line in stderr.splitlines():
        if line.startswith("profile: ") and not line.startswith("profile: work "):
            name, numbers = line[9:47].strip(), line[47:].split()
            if name == "all layers":
                continue
            rows[name] = (float(numbers[0]), float(numbers[2]))
    return rows


def forward_seconds(stderr, what):
    """the time of each run of the computation the command reports (--repeat: one line per run)"""
    return [float(x.split("forward ")[1].split(" s")[0]) for x in stderr.splitlines() if x.startswith(what + ": forward")]


def packing_seconds(stderr):
    """the unet command's time to pack the UNet's weights before its forward (not in the forward's), or None"""
    lines = [x for x in stderr.splitlines() if "weights packed beforehand in " in x]
    return float(lines[-1].split("weights packed beforehand in ")[1].split(" s")[0]) if lines else None


KERNELS = os.path.join(OUT, "bench_kernels")


def fma_peak(threads):
    """the FMA peak in GFLOP/s at this thread count, now (bench_kernels peak: best of 10 windows of 40 ms)"""
    _, _, stdout, _ = run_measured([KERNELS, "peak"], threads=threads)
    return float(stdout.split("FMA peak: ")[1].split()[0])


class Stage:
    """One t2v command run REPEATS times (the last with T2V_PROFILE=1, which costs nothing measurable), the FMA peak
    measured just before each run: on a shared virtual machine the peak itself drifts (other guests' load), so
    each stage is compared with the best peak measured beside it rather than with one taken at the start.
    Each process runs the computation RUNS times (--repeat): its first run also pays for touching the weights and
    the scratch memory for the first time, as a video's first UNet step and first decoded frame do; the later runs
    are what each further step or frame costs. min and median are over those later runs (Diffusers' time, too, is
    of a call after an untimed one), `first` is the best first run; the profile is of the last run."""

    def __init__(self, name, cmd, what, threads=THREADS, repeats=REPEATS, runs=RUNS):
        self.name, self.threads = name, threads
        self.firsts, self.times, self.peaks, self.rss, self.packing = [], [], [], 0.0, []
        for i in range(repeats):
            extra = {"T2V_PROFILE": "1"} if i == repeats - 1 else None
            self.peaks.append(fma_peak(threads))
            _, rss, _, err = run_measured(cmd + (["--repeat", str(runs)] if runs > 1 else []), extra, threads)
            seconds = forward_seconds(err, what)
            self.firsts.append(seconds[0])
            self.times += seconds[1:] or seconds
            packing = packing_seconds(err)
            if packing is not None:
                self.packing.append(packing)
            self.rss = max(self.rss, rss)
        self.profile = parse_profile(err)
        self.gflop = sum(g for _, g in self.profile.values())
        self.first, self.best, self.median = min(self.firsts), min(self.times), statistics.median(self.times)
        self.peak = max(self.peaks)


STAGE_HEADER = ("| stage | threads | first run s | later runs: min s | median s | GFLOP | GFLOP/s | FMA peak beside it, "
                "GFLOP/s | % of that peak | first run: % of peak | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|")


def stage_row(s):
    rate = s.gflop / s.best
    return (f"| {s.name} | {s.threads} | {s.first:.2f} | {s.best:.2f} | {s.median:.2f} | {s.gflop:.0f} | {rate:.0f} | "
            f"{s.peak:.0f} | {100 * rate / s.peak:.0f}% | {100 * s.gflop / s.first / s.peak:.0f}% | {s.rss:.0f} |")


def diffusers(args, label):
    """the real Diffusers module on the same file: (seconds, GFLOP, RSS MiB, line) or None"""
    if os.environ.get("BENCH_DIFFUSERS", "1") == "0" or not os.path.isdir(os.path.join(REFENV, "diffusers")):
        return None
    env = dict(openblas_env(), PYTHONPATH=REFENV)
    if os.environ.get("BENCH_BLAS"):
        env["LD_LIBRARY_PATH"] = os.environ["BENCH_BLAS"] + ":" + os.environ.get("LD_LIBRARY_PATH", "")
    _, _, stdout, _ = run_measured([sys.executable, os.path.join(ROOT, "test", "diffusers_bench.py")] + args +
                                   ["--threads", str(THREADS), "--repeat", os.environ.get("BENCH_DIFFUSERS_REPEATS", "1")], env)
    lines = [x for x in stdout.splitlines() if x.startswith("diffusers_bench:")]
    gflop = float([x for x in lines if "GFLOP (" in x][-1].split(": ")[1].split(" GFLOP")[0])
    last = lines[-1]
    seconds = float(last.split("forward ")[1].split(" s")[0])
    rss = float(last.split("peak RSS ")[1].split(" MiB")[0])
    print(f"  Diffusers {label}: {last.split(': ', 1)[1]}", flush=True)
    return seconds, gflop, rss, last.split("blas ")[-1]


def bench_kernels(kernels):
    say("## Kernels\n")
    env = dict(openblas_env(), BENCH_BLAS_LIB=blas_library() or "")
    _, _, stdout, _ = run_measured([kernels], env)
    say("```")
    for line in stdout.rstrip().splitlines():
        say(line)
    say("```\n")


def bench_modelscope(t2v):
    rng = np.random.default_rng(0)

    def inputs(shape):
        sample, context = os.path.join(OUT, f"bench_sample_{'x'.join(map(str, shape))}.npy"), os.path.join(OUT, "bench_context.npy")
        np.save(sample, rng.standard_normal(shape).astype(np.float32))
        np.save(context, rng.standard_normal((shape[0], 77, 1024)).astype(np.float32))
        return sample, context

    def unet(shape, threads=THREADS, repeats=REPEATS):
        sample, context = inputs(shape)
        print(f"  UNet {shape}, {threads} threads, {load()}", flush=True)
        return Stage(f"UNet3DConditionModel {tuple(shape)}", [t2v, "unet", MODEL, sample, "981", context,
                                                               os.path.join(OUT, "bench_out.npy")], "unet", threads, repeats)

    latent = os.path.join(OUT, "bench_latent.npy")
    np.save(latent, rng.standard_normal((1, 4, 32, 32)).astype(np.float32))
    stages = [unet([2, 4, 16, 32, 32]), unet([2, 4, 8, 16, 16])]
    print(f"  VAE decode, {load()}", flush=True)
    stages.append(Stage("VAE decode, one 256x256 frame", [t2v, "vae-decode", MODEL, latent,
                                                           os.path.join(OUT, "bench_frame.npy")], "vae-decode"))
    print(f"  text encoder, {load()}", flush=True)
    stages.append(Stage("CLIP text encoder, one prompt", [t2v, "encode-text", MODEL, "a panda playing a guitar",
                                                           os.path.join(OUT, "bench_text.npy")], "encode-text"))
    # one thread, at both shapes: the goal is the whole default forward; the small one shows the levels whose
    # weights outweigh their few rows (2x2 and 4x4 pixels), more bound by memory (which the two threads share)
    ones = [unet([2, 4, 16, 32, 32], 1), unet([2, 4, 8, 16, 16], 1)] if THREADS > 1 else []

    say(f"## t2v ({THREADS} threads; {load()} at the end)\n")
    say(STAGE_HEADER)
    for s in stages + ones:
        say(stage_row(s))
    for s in stages + ones:
        if s.packing:
            say(f"\nThe {s.name} on {s.threads} thread{'s' if s.threads > 1 else ''}: the UNet's weights were packed "
                f"for the matmul before the forward (once per run, as a video does), in {min(s.packing):.1f}-"
                f"{max(s.packing):.1f} s, which the forward's time leaves out.")
    for one, many in zip(ones, stages[:2]):
        say(f"\n{THREADS} threads are {one.best / many.best:.2f}x as fast as 1 on the {many.name}; the FMA peak measured "
            f"beside those runs was {many.peak / one.peak:.2f}x as high on {THREADS} threads as on 1.")

    default = stages[0]
    total = sum(sec for sec, _ in default.profile.values())
    matmul = sum(sec for name, (sec, g) in default.profile.items() if g > 0)
    say(f"\n### Where the default UNet forward's time goes (T2V_PROFILE=1, the last process's last run, "
        f"{default.times[-1]:.1f} s)\n")
    say("| work | seconds | share | GFLOP | GFLOP/s |")
    say("|---|---|---|---|---|")
    for name, (sec, g) in sorted(default.profile.items(), key=lambda kv: -kv[1][0]):
        say(f"| {name} | {sec:.2f} | {100 * sec / total:.1f}% | {g:.0f} | {g / sec if g else 0:.0f} |")
    say(f"\nmatmul-like work (rows with GFLOP): {100 * matmul / total:.1f}% of the layers' time; the rest "
        f"(norms, activations, copies, padding, Winograd's transforms): {100 * (total - matmul) / total:.1f}%. "
        f"The convolutions' GFLOP are counted as a direct convolution does them; Winograd's products do 4/9 of "
        f"them for a 3x3 convolution and 2/3 for a temporal one, so their GFLOP/s here are effective rates.")
    vae, text = stages[2], stages[3]
    total_video = default.first + 49 * default.best + vae.first + 15 * vae.best + text.first + text.best
    say(f"\nThe default video (16 frames 256x256, 50 DDIM steps with guidance): {default.best:.0f} s per step "
        f"({default.first:.0f} s the first), about {total_video / 60:.0f} minutes in all (50 steps, 16 frames decoded, "
        f"2 prompts encoded; loading and packing the weights aside).")

    rows = []
    d = diffusers([MODEL, "--shape", "2,4,16,32,32"], "UNet3DConditionModel (2,4,16,32,32)")
    if d:
        rows.append(("UNet3DConditionModel (2,4,16,32,32)", default, d))
    d = diffusers([MODEL, "--vae-decode", "--shape", "1,4,32,32"], "VAE decode")
    if d:
        rows.append(("VAE decode, one 256x256 frame", stages[2], d))
    if rows:
        say(f"\n## Against Diffusers 0.30.3 (real, torch {torch_version()}, {THREADS} threads; BLAS {rows[0][2][3]}"
            f"{', OPENBLAS_CORETYPE=' + openblas_env()['OPENBLAS_CORETYPE'] if openblas_env() else ''})\n")
        say("| stage | t2v s (later runs' min) | Diffusers s (a call after an untimed one) | t2v / Diffusers time | Diffusers GFLOP (its count) | Diffusers peak RSS MiB (after loading) |")
        say("|---|---|---|---|---|---|")
        for name, s, (sec, gflop, rss, _) in rows:
            say(f"| {name} | {s.best:.2f} | {sec:.2f} | {s.best / sec:.2f} | {gflop:.0f} | {rss:.0f} |")
    elif os.environ.get("BENCH_DIFFUSERS", "1") != "0":
        say(f"\n(no Diffusers baseline: no refenv at {REFENV}; see ../shared/refenv/README.md)")


def bench_sd(t2v):
    """One UNet2DConditionModel call of TextToVideoZeroPipeline at 512x512: latents (2, 4, 64, 64), the
    guidance batch of one frame, against Diffusers' own module on the same file's weights."""
    model = os.environ.get("BENCH_SD_MODEL", os.path.join(ROOT, "weights", "random-sd-1.5.t2v"))
    if not os.path.exists(model):
        print(f"bench: writing {model} (SD 1.5 configs, random weights, 4.3 GB; about a minute)", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--random", "sd-1.5", model], check=True)
    shape = (2, 4, 64, 64)
    rng = np.random.default_rng(0)
    sample, context = os.path.join(OUT, "bench_sd_sample.npy"), os.path.join(OUT, "bench_sd_context.npy")
    np.save(sample, rng.standard_normal(shape).astype(np.float32))
    np.save(context, rng.standard_normal((2, 77, 768)).astype(np.float32))
    print(f"  SD UNet {shape}, {load()}", flush=True)
    s = Stage(f"UNet2DConditionModel {shape} (SD 1.5, 512x512)", [t2v, "unet", model, sample, "981", context,
                                                                   os.path.join(OUT, "bench_sd_out.npy")], "unet")
    say(f"\n## Text2Video-Zero: one SD 1.5 UNet step at 512x512 with guidance ({load()} at the end)\n")
    say(STAGE_HEADER)
    say(stage_row(s))
    total = sum(sec for sec, _ in s.profile.values())
    say("\n| work | seconds | share | GFLOP | GFLOP/s |")
    say("|---|---|---|---|---|")
    for name, (sec, g) in sorted(s.profile.items(), key=lambda kv: -kv[1][0]):
        say(f"| {name} | {sec:.2f} | {100 * sec / total:.1f}% | {g:.0f} | {g / sec if g else 0:.0f} |")
    d = diffusers([model, "--shape", ",".join(map(str, shape))], "UNet2DConditionModel (2,4,64,64)")
    if d:
        say(f"\nDiffusers 0.30.3: {d[0]:.2f} s ({d[1]:.0f} GFLOP by its count, peak RSS {d[2]:.0f} MiB after loading, "
            f"BLAS {d[3]}); t2v takes {s.best / d[0]:.2f}x its time.")


def main():
    os.makedirs(OUT, exist_ok=True)
    t2v = build("t2v-bench", ["t2v.c", "tokenizer.c"])
    kernels = build("bench_kernels", ["test/bench_kernels.c", "tokenizer.c"], ["-ldl"])
    say(f"# make bench: {cpu_name()}, {THREADS} threads, {' '.join([CC] + CFLAGS)} -fopenmp, {load()}\n")
    bench_kernels(kernels)
    if os.environ.get("BENCH_SD") != "only":
        if not os.path.exists(MODEL):
            print(f"bench: writing {MODEL} (full-size configs, random weights, 7 GB; about a minute)", flush=True)
            subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--random", "ms-1.7b", MODEL], check=True)
        bench_modelscope(t2v)
        if os.environ.get("BENCH_INT8", "0") not in ("0", ""):
            bench_int8(t2v)
    if os.environ.get("BENCH_SD", "0") not in ("0", ""):
        bench_sd(t2v)
    with open(os.path.join(OUT, "bench.md"), "w") as f:
        f.write("\n".join(REPORT) + "\n")
    print(f"\n(written to {os.path.join(OUT, 'bench.md')})")


def bench_int8(t2v):
    """The default UNet forward on the int8 file, --int8-math float and int."""
    model = os.environ.get("BENCH_INT8_MODEL", os.path.join(ROOT, "weights", "random-ms-1.7b-int8.t2v"))
    if not os.path.exists(model):
        print(f"bench: writing {model} (full-size configs, random weights, int8, 1.9 GB; a few minutes)", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--random", "ms-1.7b", "--dtype", "int8",
                        model], check=True, stderr=subprocess.DEVNULL)
    sample, context = os.path.join(OUT, "bench_sample_2x4x16x32x32.npy"), os.path.join(OUT, "bench_context.npy")
    say(f"\n## int8 file ({os.path.getsize(model) / 2**30:.2f} GiB; float32 {os.path.getsize(MODEL) / 2**30:.2f} GiB)\n")
    say(STAGE_HEADER)
    for math in ("float", "int"):
        print(f"  int8 UNet, --int8-math {math}, {load()}", flush=True)
        s = Stage(f"UNet3DConditionModel (2, 4, 16, 32, 32), int8, --int8-math {math}",
                  [t2v, "unet", model, sample, "981", context, os.path.join(OUT, "bench_out_int8.npy"), "--int8-math", math],
                  "unet")
        say(stage_row(s))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def torch_version():
    try:
        import torch
        return torch.__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    main()
