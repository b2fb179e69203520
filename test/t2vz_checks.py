"""Text2Video-Zero cross-checks: a Stable Diffusion 1.x snapshot exported and run against the tensors the real
Diffusers 0.30.3 TextToVideoZeroPipeline produced (../shared/golden/t2vz-tiny; its README.md lists them)."""
import json
import os

import numpy as np

import harness as T

GOLDEN = os.path.join(T.GOLDEN_ROOT, "t2vz-tiny")
PROMPT = "a horse galloping on a street"


def export_sd(exes):
    model = os.path.join(T.OUT, "t2vz-tiny.t2v")
    p = T.run([T.PY, os.path.join(T.ROOT, "export.py"), os.path.join(GOLDEN, "model"), model], expect_ok=False)
    T.record("export.py on t2vz-tiny/model (StableDiffusionPipeline)", p.returncode == 0,
             p.stderr.strip().splitlines()[-1] if p.stderr else "")
    # an SD snapshot's safety checker and feature extractor are not exported, and export.py says so only when
    # the snapshot has them (this one has them set to null)
    T.record("export.py: no note about a safety_checker the snapshot does not have", "safety_checker" not in p.stderr)
    return model if p.returncode == 0 else None


def check_text(t2v, model):
    for name, prompt in (("prompt", PROMPT), ("negative", "")):
        p = T.run([t2v, "tokenize", model, prompt])
        got = [int(x) for x in p.stdout.split()] if p.returncode == 0 else []
        want = np.load(os.path.join(GOLDEN, "text", f"{name}_ids.npy")).reshape(-1).tolist()
        T.record(f"t2vz tokenize {name!r}: ids padded with <|endoftext|> (49407)", got == want,
                 "" if got == want else f"got {got[:12]}")
        out = os.path.join(T.OUT, f"t2vz_text_{name}.npy")
        T.run([t2v, "encode-text", model, prompt, out])
        if os.path.exists(out):
            T.compare(f"t2vz encode-text {name!r} vs text/{name}_embeds", np.load(out),
                      np.load(os.path.join(GOLDEN, "text", f"{name}_embeds.npy")), rel=1e-5)
    # with '<|endoftext|>' as the pad token, '!' is an ordinary token (ModelScope's tokenizer pads with '!')
    p = T.run([t2v, "tokenize", model, "wow!"])
    ids = [int(x) for x in p.stdout.split()] if p.returncode == 0 else []
    T.record("t2vz tokenize 'wow!': '!' is a word piece, not the pad id", len(ids) == 77 and 0 not in ids[:4]
             and ids[3] == 49407 and ids[2] != 49407, str(ids[:5]))


def check_unet(exes, model):
    g = os.path.join(GOLDEN, "unet")
    t = str(int(np.load(os.path.join(g, "timestep.npy")).reshape(-1)[0]))  # the unet command takes an integer timestep
    outs = {}
    for flag, ref in (([], "out"), (["--cross-frame"], "out_cross_frame")):
        for build, threads in (("omp", 2), ("omp", 1), ("plain", None)):
            if not exes.get(build):
                continue
            out = os.path.join(T.OUT, f"t2vz_unet_{ref}_{build}{threads}.npy")
            env = {"OMP_NUM_THREADS": str(threads)} if threads else None
            p = T.run([exes[build], "unet", model, os.path.join(g, "sample.npy"), t,
                       os.path.join(g, "encoder_hidden_states.npy"), out] + flag, env=env)
            if p.returncode == 0:
                outs[(ref, build, threads)] = np.load(out)
        if (ref, "omp", 2) not in outs:
            T.record(f"t2vz unet {' '.join(flag)}", False, "no output")
            continue
        got = outs[(ref, "omp", 2)]
        T.compare(f"t2vz unet {' '.join(flag) or '(default attention)'} vs unet/{ref}.npy", got,
                  np.load(os.path.join(g, ref + ".npy")), rel=1e-4)
        T.record(f"t2vz unet {' '.join(flag)}: 1 and 2 threads, OpenMP and plain builds bit-identical",
                 all(np.array_equal(v, got) for k, v in outs.items() if k[0] == ref))
    if ("out", "omp", 2) in outs and ("out_cross_frame", "omp", 2) in outs:
        # frames 0 and 3 (the first of each half) attend to themselves either way; the others differ
        a, b = outs[("out", "omp", 2)], outs[("out_cross_frame", "omp", 2)]
        T.record("t2vz unet --cross-frame: first frames unchanged, others changed",
                 np.abs(a[[0, 3]] - b[[0, 3]]).max() < 1e-5 and np.abs(a[[1, 2, 4, 5]] - b[[1, 2, 4, 5]]).max() > 1e-3)


def check_pipeline(t2v, model):
    """generate with both golden runs: 3 frames, 64x64, 12 steps, t0 8, t1 10, guidance 7.5, --seed 0."""
    g = os.path.join(GOLDEN, "pipeline")
    for sched, mx, my in (("pndm", "12", "12"), ("ddim", "128", "-64")):
        d = os.path.join(T.OUT, f"t2vz_{sched}")
        args = [t2v, model, "-p", PROMPT, "--frames", "3", "--height", "64", "--width", "64", "--steps", "12",
                "--t0", "8", "--t1", "10", "--motion-x", mx, "--motion-y", my, "--seed", "0", "--dump", d,
                "-o", os.path.join(T.OUT, f"t2vz_{sched}.y4m"), "-q"]
        if sched == "ddim":      # pndm: the snapshot's scheduler is the default
            args += ["--scheduler", "ddim"]
        if T.run(args).returncode != 0:
            continue
        T.compare(f"t2vz {sched}: latents_init (--seed 0)", np.load(os.path.join(d, "latents_init.npy")),
                  np.load(os.path.join(g, sched, "latents_init.npy")), abs_=0.0)  # bit for bit
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            T.compare(f"t2vz {sched}: {name}", np.load(os.path.join(d, name + ".npy")),
                      np.load(os.path.join(g, name + ".npy")), rel=1e-5)
        for i in (1, 2, 3):
            T.compare(f"t2vz {sched}: timesteps_{i}", np.load(os.path.join(d, f"timesteps_{i}.npy")),
                      np.load(os.path.join(g, sched, f"timesteps_{i}.npy")), abs_=0.0)
        for name in ("x1_t1", "x1_t0", "warped_t0", "x2k_t1", "x1k_t1", "latents"):
            T.compare(f"t2vz {sched}: {name}", np.load(os.path.join(d, name + ".npy")),
                      np.load(os.path.join(g, sched, name + ".npy")), rel=1e-4)
        T.compare(f"t2vz {sched}: frames", np.load(os.path.join(d, "frames.npy")),
                  np.load(os.path.join(g, sched, "frames.npy")), abs_=1e-3)
    # the DDIM run's motion moves frame k by (2k, -k) latent pixels, with a mirrored edge: the reference agrees
    warped = np.load(os.path.join(g, "ddim", "warped_t0.npy"))
    x1 = np.load(os.path.join(g, "ddim", "x1_t0.npy"))[0]
    T.record("t2vz ddim: the reference's warp is a shift by (2k, -k) latent pixels",
             np.array_equal(warped[0][:, 1:, :6], x1[:, :7, 2:]) and np.array_equal(warped[1][:, 2:, :4], x1[:, :6, 4:]))


def check_more_cases(t2v, model):
    """test/t2vz/ (made by test/make_t2vz_reference.py with the real Diffusers): the chunked long-video recipe
    (frame_ids [0] + range(start, end) per call, reseeded) and an odd latent size with other t0/t1."""
    ref_dir = os.path.join(T.ROOT, "test", "t2vz")
    with open(os.path.join(ref_dir, "cases.json")) as f:
        cases = json.load(f)
    outs = {}
    for name, c in cases["cases"].items():
        d = os.path.join(T.OUT, f"t2vz_{name}")
        args = [t2v, model, "-p", PROMPT, "--frames", str(c["frames"]), "--height", str(c["height"]),
                "--width", str(c["width"]), "--steps", str(c["steps"]), "--t0", str(c["t0"]), "--t1", str(c["t1"]),
                "--motion-x", str(c["motion_x"]), "--motion-y", str(c["motion_y"]), "--seed", str(c["seed"]),
                "--guidance", str(cases["guidance"]), "--scheduler", c["scheduler"], "--dump", d,
                "-o", os.path.join(T.OUT, f"t2vz_{name}.y4m"), "-q"]
        if c["chunk_size"]:
            args += ["--chunk-size", str(c["chunk_size"])]
        if T.run(args).returncode != 0:
            continue
        outs[name] = np.load(os.path.join(d, "frames.npy"))
        T.compare(f"t2vz {name}: latents vs test/t2vz", np.load(os.path.join(d, "latents.npy")),
                  np.load(os.path.join(ref_dir, f"{name}_latents.npy")), rel=1e-4)
        T.compare(f"t2vz {name}: frames vs test/t2vz", outs[name],
                  np.load(os.path.join(ref_dir, f"{name}_frames.npy")), abs_=1e-3)
    # the same video in one call differs: the recipe's frame 0 is a warped, re-noised copy, like the others
    c = cases["cases"]["chunks_pndm"]
    p = T.run([t2v, model, "-p", PROMPT, "--frames", str(c["frames"]), "--height", str(c["height"]),
               "--width", str(c["width"]), "--steps", str(c["steps"]), "--t0", str(c["t0"]), "--t1", str(c["t1"]),
               "--motion-x", str(c["motion_x"]), "--motion-y", str(c["motion_y"]), "--seed", str(c["seed"]),
               "--scheduler", "pndm", "--dump", os.path.join(T.OUT, "t2vz_unchunked"),
               "-o", os.path.join(T.OUT, "t2vz_unchunked.y4m"), "-q"])
    if p.returncode == 0 and "chunks_pndm" in outs:
        one = np.load(os.path.join(T.OUT, "t2vz_unchunked", "frames.npy"))
        T.record("t2vz --chunk-size 3 differs from one call (frame 0 re-noised, chunks reseeded)",
                 one.shape == outs["chunks_pndm"].shape and np.abs(one - outs["chunks_pndm"]).max() > 1e-2)
    # chunks of 2 are [0, k]: every frame is the first new frame of its call, re-noised with the generator's first
    # draw after frame 0's, as frames 0, 2 and 4 are in chunks of 3; frames 1 and 3 take later draws there
    d = os.path.join(T.OUT, "t2vz_chunks2")
    p = T.run([t2v, model, "-p", PROMPT, "--frames", str(c["frames"]), "--height", str(c["height"]),
               "--width", str(c["width"]), "--steps", str(c["steps"]), "--t0", str(c["t0"]), "--t1", str(c["t1"]),
               "--motion-x", str(c["motion_x"]), "--motion-y", str(c["motion_y"]), "--seed", str(c["seed"]),
               "--scheduler", "pndm", "--chunk-size", "2", "--dump", d,
               "-o", os.path.join(T.OUT, "t2vz_chunks2.y4m"), "-q"])
    if p.returncode == 0 and "chunks_pndm" in outs:
        two, three = np.load(os.path.join(d, "frames.npy")), outs["chunks_pndm"]
        T.record("t2vz --chunk-size 2: frames 0, 2, 4 as with --chunk-size 3, frames 1, 3 not",
                 two.shape == three.shape and np.abs(two[[0, 2, 4]] - three[[0, 2, 4]]).max() < 1e-5
                 and np.abs(two[[1, 3]] - three[[1, 3]]).max() > 1e-2)


def check_refusals(t2v, model):
    base = [t2v, model, "-p", "x", "--frames", "2", "--height", "64", "--width", "64", "--steps", "12",
            "-o", os.path.join(T.OUT, "t2vz_refused.y4m"), "-q"]
    for extra, words in ((["--t0", "10", "--t1", "10"], "--t0"), (["--t0", "3", "--t1", "12"], "--t1"),
                         (["--guidance", "1"], "guidance"), (["--scheduler", "dpm"], "dpm"),
                         (["--chunk-size", "1"], "--chunk-size")):
        p = T.run(base + extra, expect_ok=False)
        T.record(f"t2vz refuses {' '.join(extra)}", p.returncode == 1 and words in p.stderr, p.stderr.strip()[:120])


def run_all(exes):
    T.section(f"Text2Video-Zero cross-checks against Diffusers ({GOLDEN})")
    if not os.path.isdir(GOLDEN):
        T.skip("Text2Video-Zero cross-checks", f"no golden data at {GOLDEN}")
        return
    model = export_sd(exes)
    if not model:
        return
    t2v = exes["omp"]
    check_text(t2v, model)
    check_unet(exes, model)
    check_pipeline(t2v, model)
    check_more_cases(t2v, model)
    check_refusals(t2v, model)
