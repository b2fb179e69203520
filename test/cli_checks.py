"""The command line and export.py on good and bad input: bad input is a clear message and exit code 1, never a
crash, a hang or a half-written file. Also the video writers, checked by decoding what they wrote, and README's
table of where each Diffusers class lives in t2v.c."""
import glob
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np

import harness as T


def expect_error(name, cmd, words, env=None):
    """exit code 1, a 't2v: error:' / 'export.py: error:' line containing every word, no signal, no traceback"""
    p = T.run(cmd, expect_ok=False, env=env)
    msg = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    ok = p.returncode == 1 and "error:" in msg and all(w.lower() in msg.lower() for w in words) and "Traceback" not in p.stderr
    T.record(name, ok, f"-> exit {p.returncode}: {msg[:110]!r}")
    return p


def no_leftovers(name, path):
    left = [f for f in glob.glob(path + "*")]
    T.record(name, not left, f"left behind: {left}" if left else "")


# ---- model files ----

def read_table(path):
    """(header_end, entries) of a .t2v file: entries are dicts with name, offsets of their fields."""
    data = open(path, "rb").read()
    (config_size,) = struct.unpack_from("<Q", data, 16)
    pos = 24 + config_size
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    entries = []
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2: pos + 2 + ln].decode()
        pos += 2 + ln
        dtype, ndim, _ = struct.unpack_from("<BBI", data, pos)
        pos += 6
        shape_pos = pos
        pos += 8 * ndim
        entries.append({"name": name, "shape_pos": shape_pos, "offset_pos": pos})
        pos += 32
    return data, entries


def read_model_tensors(path):
    """{name: float32 array} of the float tensors of a .t2v file"""
    data, entries = read_table(path)
    out = {}
    for e in entries:
        dtype, ndim = struct.unpack_from("<BB", data, e["shape_pos"] - 6)
        shape = struct.unpack_from(f"<{ndim}q", data, e["shape_pos"])
        offset, nbytes = struct.unpack_from("<QQ", data, e["offset_pos"])
        if dtype == 0:
            out[e["name"]] = np.frombuffer(data, np.float32, nbytes // 4, offset).reshape(shape)
    return out


def check_model_files(t2v, model):
    bad = os.path.join(T.OUT, "bad.t2v")
    data, entries = read_table(model)
    expect_error("missing model file", [t2v, "tokenize", os.path.join(T.OUT, "nope.t2v"), "x"], ["cannot open"])
    open(bad, "wb").write(b"hello world, not a model")
    expect_error("not a model file (no magic)", [t2v, "tokenize", bad, "x"], ["not a t2v model file"])
    open(bad, "wb").write(data[:8] + struct.pack("<I", 99) + data[12:])
    expect_error("model file of another version", [t2v, "tokenize", bad, "x"], ["version 99"])
    for cut in (10, 30, 2000, entries[-1]["offset_pos"] - 5, len(data) // 2, len(data) - 1):
        open(bad, "wb").write(data[:cut])
        expect_error(f"model file truncated to {cut} bytes", [t2v, "tokenize", bad, "x"], ["truncated"])
    corrupt = bytearray(data)
    struct.pack_into("<Q", corrupt, entries[5]["offset_pos"], len(data) * 4)
    open(bad, "wb").write(corrupt)
    expect_error("tensor offset beyond the end of the file", [t2v, "tokenize", bad, "x"], ["outside the file"])
    corrupt = bytearray(data)
    struct.pack_into("<Q", corrupt, entries[5]["offset_pos"], 7)
    open(bad, "wb").write(corrupt)
    expect_error("misaligned / overlapping tensor offset", [t2v, "tokenize", bad, "x"], ["corrupt"])
    # a mis-shaped tensor: same byte count, other shape, so only the config check can catch it
    target = next(e for e in entries if e["name"] == "unet/conv_in.weight")
    corrupt = bytearray(data)
    struct.pack_into("<qqqq", corrupt, target["shape_pos"], 32, 4, 9, 1)
    open(bad, "wb").write(corrupt)
    expect_error("mis-shaped tensor", [t2v, "tokenize", bad, "x"], ["unet/conv_in.weight", "(32, 4, 3, 3)"])
    # a missing tensor: rename it in the table
    target = next(e for e in entries if e["name"] == "vae/decoder.conv_out.bias")
    corrupt = bytearray(data)
    i = bytes(corrupt).index(b"vae/decoder.conv_out.bias")
    corrupt[i:i + 3] = b"xxx"
    open(bad, "wb").write(corrupt)
    expect_error("missing tensor", [t2v, "tokenize", bad, "x"], ["vae/decoder.conv_out.bias", "missing"])
    # the read() fallback gives the same results as mmap
    a = T.run([t2v, "tokenize", model, "a cat"]).stdout
    ctx = os.path.join(T.OUT, "ctx_cli.npy")
    np.save(ctx, np.random.default_rng(0).standard_normal((1, 77, 32)).astype(np.float32))
    sample = os.path.join(T.OUT, "sample_cli.npy")
    np.save(sample, np.random.default_rng(1).standard_normal((1, 4, 2, 8, 8)).astype(np.float32))
    outs = []
    for env in ({}, {"T2V_NO_MMAP": "1"}):
        o = os.path.join(T.OUT, f"unet_mmap{len(outs)}.npy")
        T.run([t2v, "unet", model, sample, "10", ctx, o], env=env)
        outs.append(np.load(o))
    b = T.run([t2v, "tokenize", model, "a cat"], env={"T2V_NO_MMAP": "1"}).stdout
    T.record("T2V_NO_MMAP=1 (plain read) gives identical results", a == b and np.array_equal(outs[0], outs[1]))


# ---- prompts ----

def check_prompts(t2v, model):
    long_prompt = "a panda " * 12000
    cases = [("empty prompt", ""), ("whitespace-only prompt", " \t\n "), ("96 KB prompt", long_prompt),
             ("emoji and ZWJ", "\U0001F469\u200d\U0001F469\u200d\U0001F467 \U0001F43C!!"),
             ("control characters", "a\x01b\x7fc\u200bd"), ("lone combining mark", "\u0301\u0301x")]
    empty = T.run([t2v, "tokenize", model, ""]).stdout.split()
    bos, eos = empty[0], empty[1]
    for name, prompt in cases:
        for mode in ("diffusers", "openclip"):
            t0 = time.time()
            p = T.run([t2v, "tokenize", model, prompt, "--tokenizer", mode], expect_ok=False)
            ids = p.stdout.split()
            T.record(f"tokenize {name} ({mode})", p.returncode == 0 and len(ids) == 77 and ids[0] == bos,
                     f"{time.time() - t0:.2f} s;")
    for mode in ("diffusers", "openclip"):
        p = subprocess.run([t2v.encode(), b"tokenize", model.encode(), b"caf\xc3 \xff\xfe broken \xe2\x82 utf8 \xc3\xa9",
                            b"--tokenizer", mode.encode()], capture_output=True)
        T.record(f"tokenize invalid UTF-8 ({mode})", p.returncode == 0 and len(p.stdout.split()) == 77)
    p = T.run([t2v, "tokenize", model, long_prompt])
    ids = p.stdout.split()
    T.record("over-long prompt truncated to 77 keeping the end token", len(ids) == 77 and ids[-1] == eos)


# ---- generate arguments ----

def check_generate_errors(t2v, model):
    out = os.path.join(T.OUT, "err.y4m")
    base = [t2v, "generate", model, "-p", "a cat", "--frames", "2", "--height", "16", "--width", "16", "--steps", "1", "-q",
            "-o", out]
    expect_error("height not a multiple of 8", base + ["--height", "20"], ["multiple"])
    expect_error("width 0", base + ["--width", "0"], ["--width"])
    expect_error("frames 0", base + ["--frames", "0"], ["--frames"])
    expect_error("steps 0", base + ["--steps", "0"], ["--steps"])
    expect_error("guidance not finite", base + ["--guidance", "nan"], ["guidance"])
    expect_error("guidance not a number", base + ["--guidance", "lots"], ["guidance"])
    expect_error("unknown scheduler", base + ["--scheduler", "euler"], ["ddim, dpm or pndm"])
    expect_error("unknown option", base + ["--bogus", "1"], ["unknown option"])
    expect_error("option without its value", base + ["--steps"], ["needs a value"])
    expect_error("no prompt", [t2v, "generate", model, "-o", out], ["prompt"])
    expect_error("a video too large for this machine's memory (refused up front)",
                 base + ["--frames", "4000", "--height", "4096", "--width", "4096"], ["GiB", "memory"])
    lat = os.path.join(T.OUT, "lat_bad.npy")
    np.save(lat, np.zeros((1, 4, 3, 2, 2), np.float32))
    expect_error("--latents of the wrong shape", base + ["--latents", lat], ["shape", "(1, 4, 2, 2, 2)"])
    open(lat, "wb").write(b"\x93NUMPY garbage")
    expect_error("--latents not a .npy file", base + ["--latents", lat], [lat])
    expect_error("--latents missing", base + ["--latents", lat + ".missing"], ["cannot open"])
    expect_error("unwritable output folder", base[:-1] + [os.path.join(T.OUT, "no", "such", "dir", "v.y4m")],
                 ["cannot write"])
    expect_error("output is a directory", base[:-1] + [T.OUT], ["cannot write"])
    no_leftovers("no output left behind by failed runs", out)
    # interrupted: SIGINT during the denoising loop leaves no video and no temporary file
    p = subprocess.Popen([t2v, "generate", model, "-p", "a cat", "--frames", "4", "--height", "64", "--width", "64",
                          "--steps", "400", "-q", "-o", out], stderr=subprocess.PIPE)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    T.record("SIGINT during generate stops it", p.returncode != 0, f"(exit {p.returncode})")
    no_leftovers("no output left behind by an interrupted run", out)


def whole_token(name):
    """a regex for name as a whole token: --frames does not match inside --frames-dir, nor unet inside t2v_unet"""
    return re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])")


def check_help(t2v):
    p = T.run([t2v, "--help"])
    text = p.stdout
    # short options beside their long spelling, so "-p" cannot be found inside "--prompt"
    paired = ["-p, --prompt", "-n, --negative-prompt", "-o, --output", "-q, --quiet"]
    options = ["--frames", "--height", "--width", "--steps", "--guidance", "--scheduler", "--seed", "--latents",
               "--threads", "--fps", "--dump", "--tokenizer", "--frames-dir", "--yuv444"]
    commands = ["generate", "tokenize", "encode-text", "unet", "vae-decode", "vae-encode"]
    missing = [o for o in paired if o not in text]
    missing += [o for o in options + commands if not whole_token(o).search(text)]
    T.record("--help documents every command and option", p.returncode == 0 and not missing, f"missing {missing}" if missing else "")
    p = T.run([t2v], expect_ok=False)
    T.record("no arguments: usage on stderr, exit 1", p.returncode == 1 and "usage" in p.stderr)
    expect_error("unknown command", [t2v, "frobnicate", "x"], ["unknown command"])


# ---- README's map of t2v.c ----

README = os.path.join(T.ROOT, "README.md")
T2V_SOURCE = os.path.join(T.ROOT, "t2v.c")


def t2v_sections(lines):
    """[(section number, first line index)] in file order: a banner is a line of '/* ===...' followed by
    ' * N. Title'. A section runs to the next banner in the file, whatever its number."""
    banners = []
    for i in range(len(lines) - 1):
        heading = re.match(r" \* (\d+)\. ", lines[i + 1])
        if re.match(r"/\* ={10,}\s*$", lines[i]) and heading:
            banners.append((int(heading.group(1)), i))
    return banners


def definition_lines(lines, name):
    """Indices of the top-level lines that begin a definition of function name: not indented, and the text from
    the name on reaches a '{' before any ';' (so a prototype, even over several lines, does not count)."""
    found = []
    for i, line in enumerate(lines):
        if not re.match(rf"[A-Za-z_].*\b{re.escape(name)}\(", line):
            continue
        rest = "\n".join(lines[i:i + 40])
        brace, semicolon = rest.find("{"), rest.find(";")
        if brace >= 0 and (semicolon < 0 or brace < semicolon):
            found.append(i)
    return found


def readme_table_rows(readme_text, heading="## Reading t2v.c"):
    """The table rows (lists of cells) of the README section with that heading, or None without the section."""
    lines = readme_text.splitlines()
    if heading not in (line.strip() for line in lines):
        return None
    start = [line.strip() for line in lines].index(heading) + 1
    rows = []
    for line in lines[start:]:
        if re.match(r"#{1,2} ", line):  # the next section (a ### heading stays inside this one)
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells and not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append(cells)
    return rows[1:]  # the first row is the header


def check_readme_map(readme=README, source=T2V_SOURCE):
    """README's '## Reading t2v.c' table maps classes to C functions and t2v.c sections: every function it names
    must be defined in t2v.c inside the section the row gives."""
    name = "README 'Reading t2v.c': each function is in its t2v.c section"
    rows = readme_table_rows(open(readme, encoding="utf-8").read())
    if not rows:
        T.record(name, False, "no '## Reading t2v.c' section in README.md" if rows is None else "the table has no rows")
        return
    lines = open(source, encoding="utf-8").read().splitlines()
    banners = t2v_sections(lines)
    problems, verified = [], 0
    for cells in rows:
        functions = re.findall(r"`([A-Za-z_]\w*)\(\)`", cells[1]) if len(cells) >= 3 else []
        if not functions or not cells[2].isdigit():
            problems.append(f"row {' | '.join(cells)!r} is not: classes | `function()`... | section number")
            continue
        number = int(cells[2])
        starts = [k for k, (n, _) in enumerate(banners) if n == number]
        if len(starts) != 1:
            problems.append(f"t2v.c has {len(starts)} banners of section {number}")
            continue
        first = banners[starts[0]][1]
        end = banners[starts[0] + 1][1] if starts[0] + 1 < len(banners) else len(lines)
        for function in functions:
            where = definition_lines(lines, function)
            outside = [i + 1 for i in where if not first < i < end]
            if not where:
                problems.append(f"{function}() is not defined in t2v.c")
            elif outside:
                problems.append(f"{function}() is defined at t2v.c:{outside[0]}, outside section {number} "
                                f"(lines {first + 1}-{end})")
            else:
                verified += 1
    for problem in problems:
        print(f"    {problem}")
    T.record(name, not problems, f"{verified} functions verified;")


# ---- video files ----

def read_y4m(path):
    data = open(path, "rb").read()
    header, rest = data.split(b"\n", 1)
    fields = header.split()
    assert fields[0] == b"YUV4MPEG2", header
    info = {f[:1].decode(): f[1:].decode() for f in fields[1:]}
    W, H = int(info["W"]), int(info["H"])
    c444 = info.get("C", "420jpeg").startswith("444")
    cw, ch = (W, H) if c444 else ((W + 1) // 2, (H + 1) // 2)
    frames = []
    while rest:
        line, rest = rest.split(b"\n", 1)
        assert line.startswith(b"FRAME"), line[:20]
        n = W * H + 2 * cw * ch
        buf = np.frombuffer(rest[:n], np.uint8)
        rest = rest[n:]
        y = buf[:W * H].reshape(H, W).astype(np.float64)
        u = buf[W * H:W * H + cw * ch].reshape(ch, cw).astype(np.float64)
        v = buf[W * H + cw * ch:].reshape(ch, cw).astype(np.float64)
        if not c444:
            u = u.repeat(2, 0).repeat(2, 1)[:H, :W]
            v = v.repeat(2, 0).repeat(2, 1)[:H, :W]
        frames.append(ycbcr_to_rgb(y, u, v))
    return info, np.stack(frames)


def ycbcr_to_rgb(y, cb, cr):
    """inverse of BT.601 limited range"""
    yy, pb, pr = (y - 16) / 219, (cb - 128) / 224, (cr - 128) / 224
    r = yy + 1.402 * pr
    g = yy - 0.344136 * pb - 0.714136 * pr
    b = yy + 1.772 * pb
    return np.stack([r, g, b], -1)


def rgb_to_ycbcr(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 219 * (0.299 * r + 0.587 * g + 0.114 * b)
    cb = 128 + 224 * (-0.168736 * r - 0.331264 * g + 0.5 * b)
    cr = 128 + 224 * (0.5 * r - 0.418688 * g - 0.081312 * b)
    return y, cb, cr


def ideal_420(frames):
    """what 4:2:0 can at best give back: full-resolution luma, 2x2-averaged chroma"""
    out = []
    for f in frames:
        y, cb, cr = rgb_to_ycbcr(f.astype(np.float64))
        H, W = y.shape
        avg = [c.reshape(H // 2, 2, W // 2, 2).mean((1, 3)).repeat(2, 0).repeat(2, 1) for c in (cb, cr)]
        out.append(ycbcr_to_rgb(y, *avg))
    return np.stack(out)


def psnr(a, b):
    mse = float(np.mean((np.clip(a, 0, 1) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1.0 / mse)


def check_video(t2v, model):
    d = os.path.join(T.OUT, "video")
    shutil.rmtree(d, ignore_errors=True)
    base = [t2v, "generate", model, "-p", "a red balloon", "--frames", "3", "--height", "48", "--width", "64",
            "--steps", "2", "--seed", "5", "-q", "--fps", "12", "--dump", d]
    y420, y444 = os.path.join(T.OUT, "v420.y4m"), os.path.join(T.OUT, "v444.y4m")
    T.run(base + ["-o", y420, "--frames-dir", os.path.join(d, "ppm")])
    T.run(base + ["-o", y444, "--yuv444"])
    frames = np.load(os.path.join(d, "frames.npy"))[0]
    info, dec = read_y4m(y420)
    T.record("Y4M 4:2:0 header: W64 H48 F12:1 Ip A1:1 C420jpeg",
             info["W"] == "64" and info["H"] == "48" and info["F"] == "12:1" and info["I"] == "p" and info["A"] == "1:1"
             and info["C"] == "420jpeg" and dec.shape[0] == 3)
    err = float(np.abs(dec - ideal_420(frames)).max())
    T.record("Y4M 4:2:0 decodes to the frames with 2x2-averaged chroma", err <= 2.5 / 255,
             f"max err {err * 255:.2f}/255, PSNR vs frames {psnr(dec, frames):.1f} dB;")
    info, dec = read_y4m(y444)
    err = float(np.abs(dec - frames).max())
    T.record("Y4M 4:4:4 decodes to the frames (8-bit rounding only)", info["C"] == "444" and err <= 2.5 / 255,
             f"max err {err * 255:.2f}/255, PSNR {psnr(dec, frames):.1f} dB;")
    ppms = sorted(glob.glob(os.path.join(d, "ppm", "frame_*.ppm")))
    ok = len(ppms) == 3
    for i, path in enumerate(ppms):
        raw = open(path, "rb").read()
        head = b"P6\n64 48\n255\n"
        img = np.frombuffer(raw[len(head):], np.uint8).reshape(48, 64, 3) / 255.0
        ok = ok and raw.startswith(head) and float(np.abs(img - frames[i]).max()) <= 0.5 / 255 + 1e-9
    T.record("--frames-dir: P6 images equal to the frames (rounded)", ok, f"{len(ppms)} files;")
    if shutil.which("ffmpeg"):
        for path, label in ((y420, "4:2:0"), (y444, "4:4:4")):
            p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                               capture_output=True)
            ok = p.returncode == 0 and len(p.stdout) == 3 * 48 * 64 * 3
            got = np.frombuffer(p.stdout, np.uint8).reshape(-1, 48, 64, 3) / 255.0 if ok else None
            quality = psnr(got, frames) if ok else 0.0
            own = psnr(read_y4m(path)[1], frames)
            T.record(f"ffmpeg decodes the {label} Y4M: 3 frames 64x48", ok and quality > own - 6.0,
                     f"PSNR {quality:.1f} dB (own reader {own:.1f} dB);")
    else:
        T.skip("ffmpeg decodes the Y4M files", "ffmpeg not installed: checked with the reader above only "
               "(apt-get install ffmpeg to add it)")


# ---- export.py ----

def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, pos = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "F16":
            raw = arr.astype(np.float16).tobytes()
        elif dtype == "BF16":
            raw = (np.ascontiguousarray(arr, np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        else:
            raw = np.ascontiguousarray(arr, np.float32).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def copy_model(name):
    dst = os.path.join(T.OUT, name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(os.path.join(T.GOLDEN, "model"), dst)
    for root, _, files in os.walk(dst):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dst


def check_export(t2v, model):
    sys.path.insert(0, T.ROOT)
    import export
    export_py = [T.PY, os.path.join(T.ROOT, "export.py")]
    ref = export.read_safetensors(os.path.join(T.GOLDEN, "model", "unet", "diffusion_pytorch_model.safetensors"))
    out = os.path.join(T.OUT, "exported.t2v")

    src = copy_model("model_fp16")
    for comp, stem in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        tensors = export.read_safetensors(os.path.join(src, comp, stem + ".safetensors"))
        write_safetensors(os.path.join(src, comp, stem + ".fp16.safetensors"), tensors, "F16")
        write_safetensors(os.path.join(src, comp, stem + ".safetensors"), tensors, "BF16")
    T.run(export_py + [src, out, "--variant", "fp16"])
    unet = {n[5:]: a for n, a in read_model_tensors(out).items() if n.startswith("unet/")}
    err = max(float(np.abs(unet[k] - ref[k].astype(np.float16).astype(np.float32)).max()) for k in ref)
    T.record("export --variant fp16 reads *.fp16.safetensors (float16 widened exactly)", err == 0.0, f"max err {err};")
    T.run(export_py + [src, out])
    unet = {n[5:]: a for n, a in read_model_tensors(out).items() if n.startswith("unet/")}
    want = {k: (ref[k].view(np.uint32) >> 16 << 16).view(np.float32) for k in ref}
    err = max(float(np.abs(unet[k] - want[k]).max()) for k in ref)
    T.record("export reads bfloat16 safetensors exactly", err == 0.0, f"max err {err};")

    src = copy_model("model_legacy")
    vae_path = os.path.join(src, "vae", "diffusion_pytorch_model.safetensors")
    vae = export.read_safetensors(vae_path)
    renamed = {}
    for k, v in vae.items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            if f".attentions.0.{new}." in k:
                k = k.replace(f".attentions.0.{new}.", f".attentions.0.{old}.")
        renamed[k] = v
    write_safetensors(vae_path, renamed)
    T.run(export_py + [src, out])
    vae_out = os.path.join(T.OUT, "legacy_decode.npy")
    T.run([t2v, "vae-decode", out, os.path.join(T.GOLDEN, "vae", "decode_in.npy"), vae_out])
    T.compare("export: legacy VAE attention names (query/key/value/proj_attn)", np.load(vae_out),
              np.load(os.path.join(T.GOLDEN, "vae", "decode_out.npy")), rel=1e-4)

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        src = copy_model("model_bin")
        path = os.path.join(src, "unet", "diffusion_pytorch_model.safetensors")
        tensors = export.read_safetensors(path)
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, path[:-len(".safetensors")] + ".bin")
        os.remove(path)
        p = T.run(export_py + [src, out])
        unet = {n[5:]: a for n, a in read_model_tensors(out).items() if n.startswith("unet/")}
        T.record("export reads a PyTorch .bin checkpoint (torch importable)",
                 p.returncode == 0 and all(np.array_equal(unet[k], ref[k]) for k in ref))
    else:
        T.skip("export reads a PyTorch .bin checkpoint", "torch not importable")

    # a hub id goes through huggingface_hub.snapshot_download (a stand-in module here: no network)
    fake = os.path.join(T.OUT, "fake_hub")
    os.makedirs(os.path.join(fake, "huggingface_hub"), exist_ok=True)
    with open(os.path.join(fake, "huggingface_hub", "__init__.py"), "w") as f:
        f.write("def snapshot_download(repo_id, allow_patterns=None):\n"
                f"    assert repo_id == 'damo-vilab/text-to-video-ms-1.7b', repo_id\n"
                f"    return {os.path.join(T.GOLDEN, 'model')!r}\n")
    p = T.run(export_py + ["damo-vilab/text-to-video-ms-1.7b", out], env={"PYTHONPATH": fake})
    T.record("export of a hub id calls huggingface_hub.snapshot_download", p.returncode == 0 and "downloading" in p.stderr)

    def broken(name, edit, words):
        src = copy_model("model_broken")
        edit(src)
        expect_error(f"export: {name}", export_py + [src, out], words)

    broken("missing component", lambda s: shutil.rmtree(os.path.join(s, "vae")), ["vae"])
    broken("missing weights", lambda s: os.remove(os.path.join(s, "unet", "diffusion_pytorch_model.safetensors")),
           ["no weights"])
    broken("truncated safetensors", lambda s: open(os.path.join(s, "unet", "diffusion_pytorch_model.safetensors"), "r+b")
           .truncate(1000000), ["outside the file"])

    def set_config(s, comp, key, value, name="config.json"):
        path = os.path.join(s, comp, name)
        c = json.load(open(path))
        c[key] = value
        json.dump(c, open(path, "w"))

    broken("unsupported UNet act_fn", lambda s: set_config(s, "unet", "act_fn", "gelu"), ["act_fn", "gelu", "silu"])
    broken("unsupported block type", lambda s: set_config(s, "unet", "up_block_types", ["UpBlock3D", "UpBlock3D", "UpBlockMotion"]),
           ["UpBlockMotion"])
    broken("config that does not match the weights", lambda s: set_config(s, "unet", "cross_attention_dim", 48),
           ["shape", "config implies"])
    broken("unknown dtype", lambda s: write_safetensors(os.path.join(s, "unet", "diffusion_pytorch_model.safetensors"),
                                                         {"conv_in.weight": np.zeros((1,), np.float32)}, "F8_E4M3"), ["F8_E4M3"])
    broken("not a TextToVideoSDPipeline text encoder",
           lambda s: set_config(s, "", "text_encoder", ["transformers", "T5EncoderModel"], "model_index.json"),
           ["T5EncoderModel"])
    expect_error("export: no such folder", export_py + [os.path.join(T.OUT, "nope"), out], ["no such folder"])


def run_all(exes):
    T.section("command line, video files, export.py, README")
    t2v = exes["omp"]
    check_help(t2v)
    check_readme_map()
    have_golden = os.path.isdir(os.path.join(T.GOLDEN, "model"))
    if have_golden:
        model = os.path.join(T.OUT, "tiny.t2v")
    else:  # the command line needs a model, not the reference data: a random one of the same shape
        model = os.path.join(T.OUT, "random-tiny.t2v")
        T.run([T.PY, os.path.join(T.ROOT, "export.py"), "--random", "tiny", model])
    check_model_files(t2v, model)
    check_prompts(t2v, model)
    check_generate_errors(t2v, model)
    check_video(t2v, model)
    if have_golden:
        check_export(t2v, model)
    else:
        T.skip("export.py's reading of snapshots (fp16, bf16, legacy names, .bin, hub id, broken folders)",
               "!! no golden snapshot folder")
