"""Cross-checks of every t2v stage against the tensors the real Diffusers code produced (../shared/golden/tiny)."""
import json
import os

import numpy as np

import harness as T
import f16_checks
import int8_checks
import t2vz_checks
import video_to_video_checks


def export_tiny():
    model = os.path.join(T.OUT, "tiny.t2v")
    p = T.run([T.PY, os.path.join(T.ROOT, "export.py"), os.path.join(T.GOLDEN, "model"), model])
    T.record("export.py on golden/tiny/model", p.returncode == 0, p.stderr.strip().splitlines()[-1] if p.stderr else "")
    return model


def check_tokenizer(t2v, model):
    with open(os.path.join(T.GOLDEN, "tokens.json"), encoding="utf-8") as f:
        prompts = json.load(f)["prompts"]
    for mode in ("diffusers", "openclip"):
        matched, hf_specific = 0, 0
        for entry in prompts:
            want = entry["ids"]
            if mode == "diffusers" and "hf_slow_noftfy_ids_emulated" in entry:
                want = entry["hf_slow_noftfy_ids_emulated"]
                hf_specific += 1
            p = T.run([t2v, "tokenize", model, entry["text"], "--tokenizer", mode])
            got = [int(x) for x in p.stdout.split()] if p.returncode == 0 else []
            if got == want:
                matched += 1
            else:
                print(f"    {mode}: {entry['text']!r}\n      got  {got[:24]}\n      want {want[:24]}")
        T.record(f"tokenizer --tokenizer {mode}: tokens.json prompts", matched == len(prompts),
                 f"{matched}/{len(prompts)} identical" + (f" ({hf_specific} with transformers-specific ids);" if hf_specific else ";"))


def check_tokenizer_reference(t2v, model):
    """tokenizer.c against a Python re-implementation of both clean-ups on generated prompts (accents,
    decomposed accents, CJK, Hangul, emoji with ZWJ, HTML entities, control characters, '!' runs, invalid UTF-8,
    100 KB prompts); see test/tokenizer_reference.py."""
    driver = os.path.join(T.OUT, "tokenize_batch")
    p = T.run([T.CC, "-std=c99", "-O2", "-DTESTING", "-I", T.ROOT, "-o", driver, os.path.join(T.ROOT, "t2v.c"),
               os.path.join(T.ROOT, "tokenizer.c"), os.path.join(T.ROOT, "test", "tokenize_batch.c"), "-lm"])
    if p.returncode != 0:
        return
    p = T.run([T.PY, os.path.join(T.ROOT, "test", "tokenizer_reference.py"), model,
               os.path.join(T.GOLDEN, "model", "tokenizer"), "--tokens", os.path.join(T.GOLDEN, "tokens.json"),
               "--t2v", t2v, "--driver", driver], expect_ok=False)
    summary = [line for line in p.stdout.splitlines() if line[:1] not in (" ",)]
    print("    " + "\n    ".join(summary[-12:]))
    T.record("tokenizer.c vs the Python reference of both modes (test/tokenizer_reference.py)", p.returncode == 0)


def check_text(t2v, model):
    for name, prompt in (("prompt", "a panda playing a guitar on a mountain"), ("negative", "")):
        out = os.path.join(T.OUT, f"text_{name}.npy")
        T.run([t2v, "encode-text", model, prompt, out])
        if os.path.exists(out):
            T.compare(f"encode-text {name!r} vs text/{name}_embeds", np.load(out),
                      np.load(os.path.join(T.GOLDEN, "text", f"{name}_embeds.npy")), rel=1e-5)


def unet_run(t2v, model, tag, dump=False, threads=None, sample=None, context=None, timestep="501"):
    g = os.path.join(T.GOLDEN, "unet")
    out = os.path.join(T.OUT, f"unet_{tag}.npy")
    cmd = [t2v, "unet", model, sample or os.path.join(g, "sample.npy"), timestep,
           context or os.path.join(g, "encoder_hidden_states.npy"), out]
    if dump:
        cmd += ["--dump", os.path.join(T.OUT, "unet_dump")]
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    p = T.run(cmd, env=env)
    return np.load(out) if p.returncode == 0 else None


def check_unet(exes, model):
    g = os.path.join(T.GOLDEN, "unet")
    t2v = exes["omp"]
    out2 = unet_run(t2v, model, "omp2", dump=True, threads=2)
    if out2 is None:
        return
    T.compare("unet output vs unet/out.npy", out2, np.load(os.path.join(g, "out.npy")), rel=1e-4)
    names = sorted(n for n in os.listdir(g) if n.startswith("act_"))
    for name in names:
        path = os.path.join(T.OUT, "unet_dump", name)
        if not os.path.exists(path):
            T.record(f"unet --dump {name}", False, "not written;")
            continue
        T.compare(f"unet --dump {name}", np.load(path), np.load(os.path.join(g, name)), rel=1e-4)
    out1 = unet_run(t2v, model, "omp1", threads=1)
    T.record("unet: 1 thread and 2 threads bit-identical", out1 is not None and np.array_equal(out1, out2))
    plain = unet_run(exes["plain"], model, "plain")
    T.record("unet: build without OpenMP bit-identical", plain is not None and np.array_equal(plain, out2))
    for other in ("clang", "gcc", "tcc"):
        if exes.get(other):
            o = unet_run(exes[other], model, other)
            if o is not None:
                T.compare(f"unet built with {other} vs unet/out.npy", o, np.load(os.path.join(g, "out.npy")), rel=1e-4)


def check_unet_sizes(t2v, model):
    """Every frame count >= 1 and latent H, W >= 1, against test/reference_unet.py (an independent float64 numpy
    UNet3DConditionModel written from the Diffusers source and checked against unet/out.npy first). Odd sizes
    take Diffusers' forward_upsample_size path: each upsampler resizes to its skip connection's size."""
    import reference_unet
    config, weights = reference_unet.load_unet(os.path.join(T.GOLDEN, "model", "unet"))
    g = os.path.join(T.GOLDEN, "unet")
    ref = reference_unet.unet3d_forward(config, weights, np.load(os.path.join(g, "sample.npy")), 501,
                                        np.load(os.path.join(g, "encoder_hidden_states.npy")))
    T.compare("reference_unet.py itself vs unet/out.npy", ref, np.load(os.path.join(g, "out.npy")), rel=1e-5)
    rng = np.random.default_rng(1)
    for (b, f, h, w, t) in ((1, 1, 1, 1, 501), (1, 2, 3, 5, 999), (1, 3, 7, 9, 1), (2, 4, 5, 2, 250), (2, 1, 13, 11, 77)):
        sample, context = os.path.join(T.OUT, "sample_odd.npy"), os.path.join(T.OUT, "context_odd.npy")
        x = rng.standard_normal((b, 4, f, h, w)).astype(np.float32)
        c = rng.standard_normal((b, 77, 32)).astype(np.float32)
        np.save(sample, x)
        np.save(context, c)
        two = unet_run(t2v, model, "odd2", sample=sample, context=context, threads=2, timestep=str(t))
        one = unet_run(t2v, model, "odd1", sample=sample, context=context, threads=1, timestep=str(t))
        if two is None:
            continue
        T.compare(f"unet B={b} F={f} H={h} W={w} vs reference_unet.py", two,
                  reference_unet.unet3d_forward(config, weights, x, t, c), rel=1e-4)
        T.record(f"unet B={b} F={f} H={h} W={w}: 1 and 2 threads bit-identical", one is not None and np.array_equal(one, two))


def check_vae(t2v, model):
    g = os.path.join(T.GOLDEN, "vae")
    out = os.path.join(T.OUT, "vae_decode.npy")
    if T.run([t2v, "vae-decode", model, os.path.join(g, "decode_in.npy"), out]).returncode == 0:
        T.compare("vae-decode vs vae/decode_out.npy", np.load(out), np.load(os.path.join(g, "decode_out.npy")), rel=1e-4)
    mean, logvar = os.path.join(T.OUT, "vae_mean.npy"), os.path.join(T.OUT, "vae_logvar.npy")
    if T.run([t2v, "vae-encode", model, os.path.join(g, "encode_in.npy"), mean, logvar]).returncode == 0:
        T.compare("vae-encode mean vs vae/encode_mean.npy", np.load(mean), np.load(os.path.join(g, "encode_mean.npy")), rel=1e-4)
        T.compare("vae-encode logvar vs vae/encode_logvar.npy", np.load(logvar),
                  np.load(os.path.join(g, "encode_logvar.npy")), rel=1e-4)


PROMPT = "a panda playing a guitar on a mountain"


def check_pipeline(t2v, model):
    """generate with the golden settings: 5 frames, 64x96, guidance 9, DDIM 3 steps / DPM 4 steps, --seed 0."""
    g = os.path.join(T.GOLDEN, "pipeline")
    for sched, steps in (("ddim", 3), ("dpm", 4)):
        d = os.path.join(T.OUT, f"pipeline_{sched}")
        video = os.path.join(T.OUT, f"pipeline_{sched}.y4m")
        p = T.run([t2v, "generate", model, "-p", PROMPT, "--frames", "5", "--height", "64", "--width", "96",
                   "--steps", str(steps), "--guidance", "9", "--scheduler", sched, "--seed", "0", "--dump", d,
                   "-o", video, "-q"])
        if p.returncode != 0:
            continue
        T.compare(f"generate {sched}: latents_init (--seed 0)", np.load(os.path.join(d, "latents_init.npy")),
                  np.load(os.path.join(g, "latents_init.npy")), abs_=0.0)  # bit for bit
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            T.compare(f"generate {sched}: {name}", np.load(os.path.join(d, name + ".npy")),
                      np.load(os.path.join(g, name + ".npy")), rel=1e-5)
        T.compare(f"generate {sched}: timesteps", np.load(os.path.join(d, "timesteps.npy")),
                  np.load(os.path.join(g, sched, "timesteps.npy")))
        for name in ("unet_in", "unet_out", "noise_pred", "latents"):
            T.compare(f"generate {sched}: {name} (every step)", np.load(os.path.join(d, name + ".npy")),
                      np.load(os.path.join(g, sched, name + ".npy")), rel=1e-4)
        T.compare(f"generate {sched}: frames", np.load(os.path.join(d, "frames.npy")),
                  np.load(os.path.join(g, sched, "frames.npy")), abs_=1e-3)
    # --latents: the same run from the golden initial latents gives the same frames
    d = os.path.join(T.OUT, "pipeline_latents")
    p = T.run([t2v, "generate", model, "-p", PROMPT, "--frames", "5", "--height", "64", "--width", "96", "--steps", "3",
               "--latents", os.path.join(g, "latents_init.npy"), "--dump", d, "-o", os.path.join(T.OUT, "latents.y4m"), "-q"])
    if p.returncode == 0:
        T.compare("generate --latents latents_init.npy: frames", np.load(os.path.join(d, "frames.npy")),
                  np.load(os.path.join(g, "ddim", "frames.npy")), abs_=1e-3)


def run_all(exes):
    T.section(f"golden cross-checks against Diffusers ({T.GOLDEN})")
    model = export_tiny()
    t2v = exes["omp"]
    check_tokenizer(t2v, model)
    check_tokenizer_reference(t2v, model)
    check_text(t2v, model)
    check_unet(exes, model)
    check_unet_sizes(t2v, model)
    check_vae(t2v, model)
    check_pipeline(t2v, model)
    video_to_video_checks.run_all(exes, model)
    t2vz_checks.run_all(exes)
    f16_checks.run_all(exes)
    int8_checks.run_all(exes)
