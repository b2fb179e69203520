"""float16 model files (export.py --dtype f16, weights/README.md):

- the golden fixtures exported as f16 run every stage within bounds of the float32 references. The bounds are
  about 3x what was measured when they were set (rounding 5.6M weights to 11 significant bits gives ~1e-3
  relative error per stage here; the README's table has the numbers), so a conversion bug, which is orders of
  magnitude worse, fails them;
- exactness: a float16 checkpoint (--variant fp16) exported as f32 and as f16 gives bit-identical outputs from
  every subcommand, because the f32 export holds exactly the widened halves that the f16 file's reader makes.
"""
import json
import os
import shutil

import numpy as np

import harness as T
import t2vz_checks

PROMPT = "a panda playing a guitar on a mountain"


def export(src, out, *extra):
    p = T.run([T.PY, os.path.join(T.ROOT, "export.py"), src, out] + list(extra))
    return p


def size_line(name, f32, f16):
    a, b = os.path.getsize(f32), os.path.getsize(f16)
    print(f"  {name}: f32 {a} bytes, f16 {b} bytes ({b / a:.3f}x)")
    return b / a


def check_golden_stages(t2v):
    g = T.GOLDEN
    f32 = os.path.join(T.OUT, "tiny.t2v")        # golden_checks.export_tiny wrote it
    model = os.path.join(T.OUT, "tiny-f16.t2v")
    p = export(os.path.join(g, "model"), model, "--dtype", "f16")
    T.record("export.py --dtype f16 on golden/tiny/model", p.returncode == 0 and "0 overflow" in p.stderr,
             p.stderr.strip().splitlines()[-1] if p.stderr else "")
    if p.returncode != 0:
        return
    if os.path.exists(f32):
        ratio = size_line("golden tiny", f32, model)
        T.record(f"f16 file is at most 0.55x the f32 file (tiny: {ratio:.3f}; tokenizer tables stay as they are)",
                 ratio <= 0.55)
    for name in ("prompt", "negative"):
        out = os.path.join(T.OUT, f"f16_text_{name}.npy")
        prompt = PROMPT if name == "prompt" else ""
        if T.run([t2v, "encode-text", model, prompt, out]).returncode == 0:
            T.compare(f"f16 encode-text {name!r} vs text/{name}_embeds", np.load(out),
                      np.load(os.path.join(g, "text", f"{name}_embeds.npy")), rel=2e-3)
    gu = os.path.join(g, "unet")
    out = os.path.join(T.OUT, "f16_unet.npy")
    if T.run([t2v, "unet", model, os.path.join(gu, "sample.npy"), "501", os.path.join(gu, "encoder_hidden_states.npy"),
              out]).returncode == 0:
        T.compare("f16 unet vs unet/out.npy", np.load(out), np.load(os.path.join(gu, "out.npy")), rel=6e-3)
    gv = os.path.join(g, "vae")
    out = os.path.join(T.OUT, "f16_vae_decode.npy")
    if T.run([t2v, "vae-decode", model, os.path.join(gv, "decode_in.npy"), out]).returncode == 0:
        T.compare("f16 vae-decode vs vae/decode_out.npy", np.load(out), np.load(os.path.join(gv, "decode_out.npy")),
                  rel=3e-3)
    mean, logvar = os.path.join(T.OUT, "f16_vae_mean.npy"), os.path.join(T.OUT, "f16_vae_logvar.npy")
    if T.run([t2v, "vae-encode", model, os.path.join(gv, "encode_in.npy"), mean, logvar]).returncode == 0:
        T.compare("f16 vae-encode mean vs vae/encode_mean.npy", np.load(mean),
                  np.load(os.path.join(gv, "encode_mean.npy")), rel=3e-3)
        T.compare("f16 vae-encode logvar vs vae/encode_logvar.npy", np.load(logvar),
                  np.load(os.path.join(gv, "encode_logvar.npy")), rel=3e-3)
    gp = os.path.join(g, "pipeline")
    for sched, steps in (("ddim", 3), ("dpm", 4)):
        d = os.path.join(T.OUT, f"f16_pipeline_{sched}")
        if T.run([t2v, "generate", model, "-p", PROMPT, "--frames", "5", "--height", "64", "--width", "96",
                  "--steps", str(steps), "--guidance", "9", "--scheduler", sched, "--seed", "0", "--dump", d,
                  "-o", os.path.join(T.OUT, f"f16_{sched}.y4m"), "-q"]).returncode != 0:
            continue
        T.compare(f"f16 generate {sched}: latents (every step)", np.load(os.path.join(d, "latents.npy")),
                  np.load(os.path.join(gp, sched, "latents.npy")), rel=6e-3)
        frames = np.load(os.path.join(d, "frames.npy"))
        ref = np.load(os.path.join(gp, sched, "frames.npy"))
        T.compare(f"f16 generate {sched}: frames", frames, ref, abs_=1e-2)
        mse = float(np.mean((frames.astype(np.float64) - ref) ** 2))
        psnr = 10 * np.log10(4.0 / max(mse, 1e-30))  # frames in [-1, 1]: peak-to-peak 2
        T.record(f"f16 generate {sched}: frames PSNR {psnr:.1f} dB >= 60 dB", psnr >= 60.0)


def check_t2vz(t2v):
    g = t2vz_checks.GOLDEN
    if not os.path.isdir(g):
        T.skip("f16 Text2Video-Zero fixture", f"no golden data at {g}")
        return
    f32 = os.path.join(T.OUT, "t2vz-tiny.t2v")
    model = os.path.join(T.OUT, "t2vz-tiny-f16.t2v")
    p = export(os.path.join(g, "model"), model, "--dtype", "f16")
    T.record("export.py --dtype f16 on t2vz-tiny/model", p.returncode == 0, p.stderr.strip().splitlines()[-1]
             if p.stderr else "")
    if p.returncode != 0:
        return
    if os.path.exists(f32):
        size_line("t2vz tiny", f32, model)
    gu = os.path.join(g, "unet")
    t = str(int(np.load(os.path.join(gu, "timestep.npy")).reshape(-1)[0]))  # the unet command takes an integer timestep
    out = os.path.join(T.OUT, "f16_t2vz_unet.npy")
    if T.run([t2v, "unet", model, os.path.join(gu, "sample.npy"), t, os.path.join(gu, "encoder_hidden_states.npy"),
              out]).returncode == 0:
        T.compare("f16 t2vz unet vs unet/out.npy", np.load(out), np.load(os.path.join(gu, "out.npy")), rel=6e-3)
    out = os.path.join(T.OUT, "f16_t2vz_text.npy")
    if T.run([t2v, "encode-text", model, t2vz_checks.PROMPT, out]).returncode == 0:
        T.compare("f16 t2vz encode-text vs text/prompt_embeds", np.load(out),
                  np.load(os.path.join(g, "text", "prompt_embeds.npy")), rel=2e-3)


def make_fp16_snapshot():
    """golden/tiny/model copied with every float32 safetensors rounded to float16 and saved as *.fp16.safetensors
    (the layout of the hub's fp16 variant); the float32 files are left out, so only the variant can be read."""
    src = os.path.join(T.GOLDEN, "model")
    dst = os.path.join(T.OUT, "tiny-fp16-snapshot")
    shutil.rmtree(dst, ignore_errors=True)
    for root, _, files in os.walk(src):
        rel = os.path.relpath(root, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            if f.endswith(".safetensors"):
                write_fp16_safetensors(os.path.join(root, f),
                                       os.path.join(dst, rel, f[:-len(".safetensors")] + ".fp16.safetensors"))
            elif not f.endswith((".bin", ".pt", ".ckpt")):
                shutil.copy(os.path.join(root, f), os.path.join(dst, rel, f))
    return dst


def write_fp16_safetensors(src, dst):
    with open(src, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out_header, blobs, pos = {}, [], 0
    for name, info in header.items():
        if name == "__metadata__":
            out_header[name] = info
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            raw = np.frombuffer(raw, dtype="<f4").astype("<f2").tobytes()
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    h = json.dumps(out_header).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h)
        for b in blobs:
            f.write(b)


def check_fp16_exactness(exes):
    snap = make_fp16_snapshot()
    m32, m16 = os.path.join(T.OUT, "tiny-fp16-as-f32.t2v"), os.path.join(T.OUT, "tiny-fp16-as-f16.t2v")
    p32 = export(snap, m32, "--variant", "fp16")
    p16 = export(snap, m16, "--variant", "fp16", "--dtype", "f16")
    T.record("export.py --variant fp16 of the fp16 snapshot, as f32 and as f16", p32.returncode == 0 and
             p16.returncode == 0 and "0 rounded to zero" in p16.stderr)
    if p32.returncode or p16.returncode:
        return
    size_line("fp16 snapshot", m32, m16)
    g = T.GOLDEN
    gu, gv = os.path.join(g, "unet"), os.path.join(g, "vae")
    runs = {
        "unet": lambda m, o: ["unet", m, os.path.join(gu, "sample.npy"), "501",
                              os.path.join(gu, "encoder_hidden_states.npy"), o],
        "vae-decode": lambda m, o: ["vae-decode", m, os.path.join(gv, "decode_in.npy"), o],
        "encode-text": lambda m, o: ["encode-text", m, PROMPT, o],
    }
    for build in ("omp", "plain"):
        t2v = exes.get(build)
        if not t2v:
            continue
        for name, args in runs.items():
            outs = []
            for tag, m in (("f32", m32), ("f16", m16)):
                o = os.path.join(T.OUT, f"fp16x_{name}_{build}_{tag}.npy")
                outs.append(np.load(o) if T.run([t2v] + args(m, o)).returncode == 0 else None)
            T.record(f"fp16 variant: {name} bit-identical from the f32 and f16 files ({build} build)",
                     outs[0] is not None and outs[1] is not None and outs[0].tobytes() == outs[1].tobytes())
    frames = []
    for tag, m in (("f32", m32), ("f16", m16)):
        d = os.path.join(T.OUT, f"fp16x_generate_{tag}")
        y4m = os.path.join(T.OUT, f"fp16x_{tag}.y4m")
        ok = T.run([exes["omp"], "generate", m, "-p", PROMPT, "--frames", "5", "--height", "64", "--width", "96",
                    "--steps", "2", "--seed", "0", "--dump", d, "-o", y4m, "-q"]).returncode == 0
        frames.append((np.load(os.path.join(d, "frames.npy")).tobytes(), open(y4m, "rb").read()) if ok else None)
    T.record("fp16 variant: generate's frames and video bit-identical from the f32 and f16 files",
             frames[0] is not None and frames[0] == frames[1])


def run_all(exes):
    T.section("float16 model files (export.py --dtype f16)")
    t2v = exes["omp"]
    check_golden_stages(t2v)
    check_t2vz(t2v)
    check_fp16_exactness(exes)
