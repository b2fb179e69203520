"""Video-to-video (VideoToVideoSDPipeline) against the real Diffusers (test/vid2vid/, made by
test/make_vid2vid_reference.py), and the Y4M reader against ffmpeg's decoding of the same files."""
import json
import os
import subprocess

import numpy as np

import harness as T
from cli_checks import expect_error, ideal_420

REFERENCE = os.path.join(T.ROOT, "test", "vid2vid")
PROMPT = "a panda playing a guitar on a mountain"   # unused by the reference (it passes the golden prompt_embeds)


def generate(t2v, model, tag, *options):
    """generate with --dump; returns the dump folder, or None when the command failed"""
    d = os.path.join(T.OUT, "v2v_" + tag)
    p = T.run([t2v, "generate", model, "-p", PROMPT, "--dump", d, "-o", d + ".y4m", "-q"] + list(options))
    return d if p.returncode == 0 else None


def check_reference(t2v, model):
    """--init-frames with each case's settings: the noise bit for bit, latents <= 1e-4 of max|ref|, frames <= 1e-3"""
    with open(os.path.join(REFERENCE, "manifest.json")) as f:
        cases = json.load(f)["cases"]
    for name, c in cases.items():
        ref = os.path.join(REFERENCE, name)
        d = generate(t2v, model, name, "--init-frames", os.path.join(ref, "init_frames.npy"), "--strength", str(c["strength"]),
                     "--steps", str(c["steps"]), "--scheduler", c["scheduler"], "--seed", str(c["seed"]))
        if not d:
            continue
        label = f"video-to-video {name} ({c['frames']} frames {c['width']}x{c['height']}, {c['steps']} steps)"
        for stage, bound in (("sample_noise", 0.0), ("noise", 0.0)):
            T.compare(f"{label}: {stage} (--seed {c['seed']}, bit for bit)", np.load(os.path.join(d, stage + ".npy")),
                      np.load(os.path.join(ref, stage + ".npy")), abs_=bound)
        T.compare(f"{label}: timesteps", np.load(os.path.join(d, "timesteps.npy")), np.load(os.path.join(ref, "timesteps.npy")))
        for stage in ("video_latents", "latents_init", "latents"):
            T.compare(f"{label}: {stage}", np.load(os.path.join(d, stage + ".npy")), np.load(os.path.join(ref, stage + ".npy")),
                      rel=1e-4)
        T.compare(f"{label}: frames", np.load(os.path.join(d, "frames.npy")), np.load(os.path.join(ref, "frames.npy")), abs_=1e-3)


def ffmpeg_rgb(path, shape):
    """ffmpeg's own decoding of a video to RGB in [0, 1], (F, H, W, 3)"""
    p = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                       capture_output=True, check=True)
    return np.frombuffer(p.stdout, np.uint8).reshape((-1,) + shape[1:]) / 255.0


def decoded_by_t2v(t2v, model, path, tag):
    """the frames t2v read from a Y4M file (its --dump init_frames.npy), or None"""
    d = generate(t2v, model, tag, "--init-video", path, "--steps", "1", "--strength", "1")
    return np.load(os.path.join(d, "init_frames.npy")) if d else None


def psnr(a, b):
    return 10 * np.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


def check_y4m_reader(t2v, model):
    """The Y4M layouts ffmpeg writes, decoded by t2v and by ffmpeg: the same pictures to within the rounding and
    chroma upsampling of the two (t2v repeats each chroma sample over its pixels)."""
    source = np.load(os.path.join(REFERENCE, "ddim_s0.6", "init_frames.npy"))   # smooth moving shapes, 48x64
    F, H, W, _ = source.shape
    rgb24 = (source * 255 + 0.5).astype(np.uint8).tobytes()
    # (ffmpeg pixel format and options, max |t2v - ffmpeg| in 1/255): measured 2.9, 2.9, 0.5, 0, 0.5, 2.0
    layouts = [("yuv420p", [], 4), ("yuv422p", [], 4), ("yuv444p", [], 1), ("gray", [], 1),
               ("yuv444p", ["-color_range", "pc"], 1), ("yuv420p", ["-color_range", "pc"], 4)]
    decoded = {}
    for pix, extra, bound in layouts:
        tag = pix + ("_full" if extra else "")
        path = os.path.join(T.OUT, f"y4m_{tag}.y4m")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}",
                        "-i", "-"] + extra + ["-pix_fmt", pix, path], input=rgb24, check=True)
        header = open(path, "rb").readline().decode().split()
        got = decoded_by_t2v(t2v, model, path, "y4m_" + tag)
        if got is None:
            continue
        decoded[tag] = got
        ref = ffmpeg_rgb(path, source.shape)
        err = float(np.abs(got - ref).max()) * 255
        T.record(f"Y4M {' '.join(h for h in header if h[0] in 'CX')}: t2v vs ffmpeg decode", got.shape == ref.shape and err <= bound,
                 f"max {err:.2f}/255 (<= {bound}), PSNR vs the RGB source {psnr(got, source):.1f} dB (ffmpeg {psnr(ref, source):.1f});")
    # the other 4:2:0 sitings, a plain C420, no C tag (4:2:0 by default), and FRAME headers with parameters
    if "yuv420p" in decoded:
        data = open(os.path.join(T.OUT, "y4m_yuv420p.y4m"), "rb").read()
        header, body = data.split(b"\n", 1)
        variants = {"C420mpeg2": header.replace(b"C420jpeg", b"C420mpeg2"), "C420paldv": header.replace(b"C420jpeg", b"C420paldv"),
                    "C420": header.replace(b"C420jpeg", b"C420"), "no C tag": header.replace(b" C420jpeg", b"")}
        for name, h in list(variants.items()) + [("FRAME with parameters", header)]:
            path = os.path.join(T.OUT, "y4m_variant.y4m")
            b = body.replace(b"FRAME\n", b"FRAME Ixyz XFOO=1\n") if name.startswith("FRAME") else body
            open(path, "wb").write(h + b"\n" + b)
            got = decoded_by_t2v(t2v, model, path, "y4m_variant")
            T.record(f"Y4M 4:2:0, {name}: the same frames as C420jpeg", got is not None and np.array_equal(got, decoded["yuv420p"]))


def check_own_y4m(t2v, model):
    """t2v's own Y4M read back: 4:4:4 within the 8-bit rounding of the frames written; 4:2:0 within it of the
    best a 4:2:0 file can give back (full-resolution luma, 2x2-averaged chroma), and as ffmpeg decodes it."""
    for yuv444 in (True, False):
        tag = "own_444" if yuv444 else "own_420"
        d = generate(t2v, model, tag, "--frames", "2", "--height", "48", "--width", "64", "--steps", "2",
                     *(["--yuv444"] if yuv444 else []))
        if not d:
            continue
        frames = np.load(os.path.join(d, "frames.npy"))[0]
        got = decoded_by_t2v(t2v, model, d + ".y4m", tag + "_back")
        if got is None:
            continue
        # (what, reference, max |difference| in 1/255): measured 1.6, 1.6 and 2.9
        refs = [("the frames written", frames, 3)] if yuv444 else [
            ("the frames with 2x2-averaged chroma", np.clip(ideal_420(frames), 0, 1), 3),
            ("ffmpeg's decode", ffmpeg_rgb(d + ".y4m", frames.shape), 4)]
        for what, ref, bound in refs:
            err = float(np.abs(got - ref).max()) * 255
            T.record(f"t2v's own Y4M ({'4:4:4' if yuv444 else '4:2:0'}) read back vs {what}", err <= bound,
                     f"max {err:.2f}/255 (<= {bound}), PSNR vs the frames written {psnr(got, frames):.1f} dB;")


def check_refusals(t2v, model):
    y4m = os.path.join(T.OUT, "y4m_yuv420p.y4m")
    data = open(y4m, "rb").read() if os.path.exists(y4m) else b"YUV4MPEG2 W64 H48 F8:1 Ip C420jpeg\n"
    header, body = data.split(b"\n", 1)
    bad = os.path.join(T.OUT, "y4m_bad.y4m")
    base = [t2v, "generate", model, "-p", "x", "--steps", "1", "-q", "-o", os.path.join(T.OUT, "v2v_bad_out.y4m")]
    for name, content, words in (
            ("interlaced (It)", header.replace(b"Ip", b"It") + b"\n" + body, ["interlaced"]),
            ("10-bit (C420p10)", header.replace(b"C420jpeg", b"C420p10") + b"\n" + body, ["C420p10", "not supported"]),
            ("alpha (C444alpha)", header.replace(b"C420jpeg", b"C444alpha") + b"\n" + body, ["C444alpha"]),
            ("a truncated frame", data[:-100], ["truncated"]),
            ("no YUV4MPEG2 header", b"RIFF" + data[4:], ["not a Y4M"]),
            ("a size that is not a multiple of 8", b"YUV4MPEG2 W60 H44 F8:1 Ip C420jpeg\nFRAME\n" + bytes(60 * 44 + 2 * 30 * 22),
             ["multiples of 8", "ffmpeg"])):
        open(bad, "wb").write(content)
        expect_error(f"--init-video with {name}: refused", base + ["--init-video", bad], words)
    expect_error("--init-video with another --frames: refused", base + ["--init-video", y4m, "--frames", "2"], ["input's size"])
    expect_error("--init-video with --latents: refused",
                 base + ["--init-video", y4m, "--latents", os.path.join(REFERENCE, "ddim_s0.6", "latents_init.npy")], ["latents"])
    expect_error("--strength without a video: refused", base + ["--strength", "0.5"], ["video-to-video"])
    expect_error("--strength 0: refused", base + ["--init-video", y4m, "--strength", "0"], ["strength"])
    expect_error("--strength too small for the steps: refused", base + ["--init-video", y4m, "--strength", "0.5"], ["strength"])


def run_all(exes, model):
    T.section("video-to-video against Diffusers' VideoToVideoSDPipeline (test/vid2vid), the Y4M reader against ffmpeg")
    t2v = exes["omp"]
    check_reference(t2v, model)
    if not T.have("ffmpeg"):
        T.skip("Y4M reader vs ffmpeg", "ffmpeg not installed (apt-get install ffmpeg)")
    else:
        check_y4m_reader(t2v, model)
        check_own_y4m(t2v, model)
    check_refusals(t2v, model)
