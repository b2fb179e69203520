#!/usr/bin/env python3
"""make bench: how fast t2v runs the full-size ModelScope model, against PyTorch on the same CPU and against
the machine's peak. It uses the real configs with random weights (export.py --random ms-1.7b, 7 GB), made
once in weights/. Timings on a shared machine are noisy: compare ratios measured in one run.

    make bench                               UNet at (2,4,16,32,32): one step of the default 16x256x256 video
    BENCH_SHAPE=2,4,8,16,16 make bench       a smaller UNet input
    BENCH_TORCH=0 make bench                 without the PyTorch baseline (test/torch_unet.py, minutes)
    BENCH_THREADS=1 make bench               thread count (default: all cores)
    BENCH_SD=1 make bench                    then one Text2Video-Zero step: UNet2DConditionModel at (2,4,64,64),
                                             512x512 with guidance, on export.py --random sd-1.5 (4.3 GB, made
                                             once in weights/), against the real Diffusers when its refenv is
                                             there (BENCH_REFENV=DIR, default /tmp/refenv; see ../shared/refenv)
    BENCH_SD=only make bench                 that stage alone
    BENCH_INT8=1 make bench                  then the same UNet forward on the int8 export (export.py --random
                                             ms-1.7b --dtype int8, 1.9 GB, made once in weights/) through both
                                             --int8-math paths (the kernels' int8 table is always printed)
    BENCH_BLAS=DIR                           put DIR first on the Diffusers run's LD_LIBRARY_PATH (an unpacked
                                             OpenBLAS: Debian's torch otherwise uses netlib's reference BLAS)
"""
import os
import subprocess
import sys
import time

import numpy as np

from harness import CC, CFLAGS, OUT, ROOT, WARN

MODEL = os.environ.get("BENCH_MODEL", os.path.join(ROOT, "weights", "random-ms-1.7b.t2v"))
SHAPE = [int(x) for x in os.environ.get("BENCH_SHAPE", "2,4,16,32,32").split(",")]
THREADS = int(os.environ.get("BENCH_THREADS", str(os.cpu_count() or 1)))


def run_measured(cmd, extra_env=None):
    """(wall seconds, peak RSS in MiB, stdout, stderr) of one child process"""
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), **(extra_env or {}))
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


def build(name, source_files):
    exe = os.path.join(OUT, name)
    subprocess.run([CC] + WARN + ["-Wno-unused-function"] + CFLAGS +
                   ["-fopenmp", "-o", exe] + [os.path.join(ROOT, f) for f in source_files] + ["-lm"], check=True)
    return exe


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
    print(f"\n== Text2Video-Zero: UNet2DConditionModel forward (SD 1.5 config), sample {shape}, {THREADS} threads, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    _, rss, _, err = run_measured([t2v, "unet", model, sample, "981", context, os.path.join(OUT, "bench_sd_out.npy")])
    line = [x for x in err.splitlines() if "forward" in x][-1]
    t2v_s = float(line.split("forward ")[1].split(" s")[0])
    refenv = os.environ.get("BENCH_REFENV", "/tmp/refenv")
    gflop = None
    if os.path.isdir(os.path.join(refenv, "diffusers")):
        env = {"PYTHONPATH": refenv}
        if os.environ.get("BENCH_BLAS"):
            env["LD_LIBRARY_PATH"] = os.environ["BENCH_BLAS"] + ":" + os.environ.get("LD_LIBRARY_PATH", "")
        _, _, stdout, _ = run_measured([sys.executable, os.path.join(ROOT, "test", "diffusers_unet2d.py"), model,
                                        "--shape", ",".join(map(str, shape)), "--threads", str(THREADS)], env)
        lines = [x for x in stdout.splitlines() if x.startswith("diffusers_unet2d:")]
        gflop = float([x for x in lines if "GFLOP (" in x][-1].split(": ")[1].split(" GFLOP")[0])
        print(f"t2v:       forward {t2v_s:.2f} s, {gflop / t2v_s:.1f} GFLOP/s, peak RSS {rss:.0f} MiB "
              f"(whole process, mapped weights included)")
        print(f"Diffusers: {lines[-1].split(': ', 1)[1]} (peak RSS counted from after loading)")
        print(f"the step: {gflop:.0f} GFLOP (convolutions, linear layers, attention matmuls, counted from the "
              f"shapes Diffusers runs); t2v / Diffusers: {float(lines[-1].split('forward ')[1].split(' s')[0]) / t2v_s:.2f}x "
              f"the speed; load {os.getloadavg()[0]:.2f}", flush=True)
    else:
        print(f"t2v:       forward {t2v_s:.2f} s, peak RSS {rss:.0f} MiB (no Diffusers refenv at {refenv}: "
              f"no baseline, no GFLOP count)", flush=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    if os.environ.get("BENCH_SD") == "only":
        t2v = build("t2v-bench", ["t2v.c", "tokenizer.c"])
        print(f"CPU: {cpu_name()}, {THREADS} threads, {' '.join([CC] + CFLAGS)} -fopenmp", flush=True)
        bench_sd(t2v)
        return
    if not os.path.exists(MODEL):
        print(f"bench: writing {MODEL} (full-size configs, random weights, 7 GB; about a minute)", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--random", "ms-1.7b", MODEL], check=True)
    t2v = build("t2v-bench", ["t2v.c", "tokenizer.c"])
    kernels = build("bench_kernels", ["test/bench_kernels.c", "tokenizer.c"])
    print(f"CPU: {cpu_name()}, {THREADS} threads, {' '.join([CC] + CFLAGS)} -fopenmp\n", flush=True)

    print("== kernels (matmul at the UNet's shapes)", flush=True)
    _, _, stdout, _ = run_measured([kernels])
    print(stdout.rstrip(), flush=True)

    B, C, F, H, W = SHAPE
    rng = np.random.default_rng(0)
    sample, context = os.path.join(OUT, "bench_sample.npy"), os.path.join(OUT, "bench_context.npy")
    np.save(sample, rng.standard_normal(SHAPE).astype(np.float32))
    np.save(context, rng.standard_normal((B, 77, 1024)).astype(np.float32))
    print(f"\n== UNet3DConditionModel forward, sample {tuple(SHAPE)}, {THREADS} threads", flush=True)
    _, rss, _, err = run_measured([t2v, "unet", MODEL, sample, "981", context, os.path.join(OUT, "bench_out.npy")])
    line = [x for x in err.splitlines() if "forward" in x][-1]
    unet_s = float(line.split("forward ")[1].split(" s")[0])
    print(f"t2v:     forward {unet_s:.1f} s, peak RSS {rss:.0f} MiB (mapped weights included)", flush=True)
    torch_s = None
    if os.environ.get("BENCH_TORCH", "1") != "0":
        _, torch_rss, stdout, _ = run_measured([sys.executable, os.path.join(ROOT, "test", "torch_unet.py"), MODEL,
                                                "--shape", ",".join(map(str, SHAPE)), "--threads", str(THREADS), "--repeat", "2"])
        line = [x for x in stdout.splitlines() if "forward" in x][-1]
        torch_s = float(line.split("forward ")[1].split(" s")[0])
        if "openblas" not in line.lower() and "mkl" not in line.lower():
            print("  (torch is using a slow reference BLAS: apt-get install libopenblas0-pthread for a fair baseline)")
        print(f"PyTorch: forward {torch_s:.1f} s (best of 2 after a warm-up), peak RSS {torch_rss:.0f} MiB "
              f"(torch {torch_version()}, the ops Diffusers runs; {line.split('blas ')[-1] if 'blas' in line else ''})",
              flush=True)
        print(f"t2v / PyTorch: {torch_s / unet_s:.2f}x the speed", flush=True)

    print("\n== the other stages", flush=True)
    latent = os.path.join(OUT, "bench_latent.npy")
    np.save(latent, rng.standard_normal((1, 4, 32, 32)).astype(np.float32))
    vae_s, _, _, _ = run_measured([t2v, "vae-decode", MODEL, latent, os.path.join(OUT, "bench_frame.npy")])
    text_s, _, _, _ = run_measured([t2v, "encode-text", MODEL, "a panda playing a guitar", os.path.join(OUT, "bench_text.npy")])
    print(f"VAE decode of one 256x256 frame: {vae_s:.1f} s (process, with loading)")
    print(f"text encoder, one prompt: {text_s:.1f} s (process, with loading)")
    if SHAPE == [2, 4, 16, 32, 32]:
        total = 50 * unet_s + 16 * vae_s + 2 * text_s
        print(f"\nthe default video (16 frames 256x256, 50 DDIM steps): {unet_s:.0f} s per step, about "
              f"{total / 60:.0f} minutes in all on this machine")
    if os.environ.get("BENCH_INT8", "0") not in ("0", ""):
        bench_int8(t2v, sample, context, unet_s, rss)
    if os.environ.get("BENCH_SD", "0") not in ("0", ""):
        bench_sd(t2v)


def bench_int8(t2v, sample, context, f32_s, f32_rss):
    """The UNet forward of the main bench on the int8 file, --int8-math float and int, beside the float32 time."""
    model = os.environ.get("BENCH_INT8_MODEL", os.path.join(ROOT, "weights", "random-ms-1.7b-int8.t2v"))
    if not os.path.exists(model):
        print(f"bench: writing {model} (full-size configs, random weights, int8, 1.9 GB; a few minutes)", flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--random", "ms-1.7b", "--dtype", "int8",
                        model], check=True, stderr=subprocess.DEVNULL)
    print(f"\n== int8 file ({os.path.getsize(model) / 2**30:.2f} GiB, float32 {os.path.getsize(MODEL) / 2**30:.2f} GiB): "
          f"UNet forward, sample {tuple(SHAPE)}, {THREADS} threads", flush=True)
    print(f"float32 file:           {f32_s:.1f} s, peak RSS {f32_rss:.0f} MiB")
    for math in ("float", "int"):
        _, rss, _, err = run_measured([t2v, "unet", model, sample, "981", context, os.path.join(OUT, "bench_out_int8.npy"),
                                       "--int8-math", math])
        line = [x for x in err.splitlines() if "forward" in x][-1]
        s = float(line.split("forward ")[1].split(" s")[0])
        print(f"int8, --int8-math {math:5s}: {s:.1f} s ({f32_s / s:.2f}x float32), peak RSS {rss:.0f} MiB", flush=True)


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
