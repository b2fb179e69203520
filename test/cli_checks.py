"""The command line and export.py on good and bad input: bad input is a clear message and exit code 1, never a
crash, a hang or a half-written file. Also the video writers, checked by decoding what they wrote, and README's
table of where each Diffusers class lives in t2v.c."""
import glob
import json
import os
import re
import shutil
import signal
import stat
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
    """(data, entries) of a .t2v file: see parse_table"""
    data = open(path, "rb").read()
    return data, parse_table(data)


def parse_table(data):
    """the table entries of a .t2v file's bytes: dicts with the name and the offsets of its shape and data fields"""
    (config_size,) = struct.unpack_from("<Q", data, 16)
    pos = 24 + config_size
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    entries = []
    for _ in range(n):
        (ln,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2: pos + 2 + ln].decode()
        pos += 2 + ln
        (ndim,) = struct.unpack_from("<B", data, pos + 1)
        shape_pos = pos + 6
        pos = shape_pos + 8 * ndim
        entries.append({"name": name, "shape_pos": shape_pos, "offset_pos": pos})
        pos += 32
    return entries


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
    # (mapped, the UNet's weights are packed once before the forward; read, its products pack them per block)
    T.record("T2V_NO_MMAP=1 (plain read) gives identical results", a == b and np.array_equal(outs[0], outs[1]))
    # --repeat N: N runs of the computation, each timed, the output the same bits as one run's
    o = os.path.join(T.OUT, "unet_repeat.npy")
    p = T.run([t2v, "unet", model, sample, "10", ctx, o, "--repeat", "3"])
    T.record("unet --repeat 3: three timed forwards, the output of one", p.stderr.count("unet: forward") == 3 and
             np.array_equal(np.load(o), outs[0]), f"{p.stderr.count('unet: forward')} forward lines;")
    o = os.path.join(T.OUT, "vae_repeat.npy")
    T.run([t2v, "vae-decode", model, os.path.join(T.GOLDEN, "vae", "decode_in.npy"), o])
    once = np.load(o)
    p = T.run([t2v, "vae-decode", model, os.path.join(T.GOLDEN, "vae", "decode_in.npy"), o, "--repeat", "2"])
    T.record("vae-decode --repeat 2: two timed forwards, the output of one",
             p.stderr.count("vae-decode: forward") == 2 and np.array_equal(np.load(o), once))
    expect_error("--repeat with generate", [t2v, "generate", model, "-p", "a cat", "--repeat", "2"],
                 ["--repeat", "unet"])
    expect_error("--repeat 0", [t2v, "encode-text", model, "a cat", o, "--repeat", "0"], ["--repeat", "[1, 1000]"])


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
               "--threads", "--fps", "--dump", "--tokenizer", "--frames-dir", "--yuv444", "--prompt-file",
               "--negative-prompt-file", "--repeat"]
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
        # t2v rounds v * 255 computed in float32 (to_byte): within a float32 rounding of the half-way point
        ok = ok and raw.startswith(head) and float(np.abs(img - frames[i]).max()) <= 0.5 / 255 + 1e-7
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


# ---- the hostile-input table: files, paths, non-finite numbers, model fields, the command line ----
# Every row asserts the exact outcome: the exit code (never a signal), for a refusal exactly one stderr line
# 't2v: error: ...' holding every word, and the row's folder unchanged byte for byte afterwards (its inputs
# unchanged, no stray or temporary file) unless the row names the files it must write.

def snapshot(folder):
    """{relative path: what it is}: a link's target, a FIFO, or a regular file's bytes (hashed)"""
    import hashlib
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo",)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


def with_config(data, key, value):
    """the model file with config line key=value (replaced, or added), tensor offsets moved to match"""
    (config_size,) = struct.unpack_from("<Q", data, 16)
    lines = [line for line in data[24:24 + config_size].decode().splitlines() if not line.startswith(key + "=")]
    config = ("\n".join(lines + [f"{key}={value}"]) + "\n").encode()
    entries = parse_table(data)
    table_start, table_end = 24 + config_size, entries[-1]["offset_pos"] + 32
    table = bytearray(data[table_start:table_end])
    fields = [struct.unpack_from("<QQQQ", data, e["offset_pos"]) for e in entries]
    first = min([f[0] for f in fields] + [f[2] for f in fields if f[3]])
    header_len = 24 + len(config) + len(table)
    new_first = (header_len + 63) // 64 * 64
    shift = new_first - first
    for e, (off, nbytes, scale_off, scale_bytes) in zip(entries, fields):
        struct.pack_into("<QQQQ", table, e["offset_pos"] - table_start, off + shift, nbytes,
                         scale_off + shift if scale_bytes else scale_off, scale_bytes)
    return data[:16] + struct.pack("<Q", len(config)) + config + bytes(table) + bytes(new_first - header_len) + data[first:]


def with_tensor_nan(data, name):
    """the model file with every value of float tensor name set to NaN"""
    out = bytearray(data)
    e = next(e for e in parse_table(data) if e["name"] == name)
    off, nbytes = struct.unpack_from("<QQ", data, e["offset_pos"])
    out[off:off + nbytes] = np.full(nbytes // 4, np.nan, np.float32).tobytes()
    return bytes(out)


class Hostile:
    """One folder per row (T.OUT/hostile/NAME); the model is linked in where a row needs it there."""

    def __init__(self, t2v, model):
        self.t2v, self.model = t2v, model
        self.root = os.path.join(T.OUT, "hostile")
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)
        self.data = open(model, "rb").read()
        self.n = 0

    def folder(self):
        self.n += 1
        d = os.path.join(self.root, f"case{self.n:02d}")
        os.makedirs(d)
        return d

    def gen(self, model, out, *extra):
        return [self.t2v, "generate", model, "-p", "a cat", "--frames", "2", "--height", "16", "--width", "16",
                "--steps", "2", "-q", "-o", out] + list(extra)

    def row(self, name, d, cmd, code, words=(), writes=(), stdin=None, timeout=60, stdout_check=None):
        before = snapshot(d)
        try:
            p = subprocess.run(cmd, capture_output=True, input=stdin, timeout=timeout, cwd=d)
        except subprocess.TimeoutExpired:
            T.record(f"hostile: {name}", False, f"hung (no exit in {timeout} s)")
            return None
        after = snapshot(d)
        lines = p.stderr.decode("utf-8", "replace").strip().splitlines()
        if code == 0:
            message_ok = True
        else:
            message_ok = (len(lines) == 1 and lines[0].startswith("t2v: error: ")
                          and all(w.lower() in lines[0].lower() for w in words))
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        files_ok = changed == sorted(writes)
        extra_ok = stdout_check(p.stdout) if stdout_check else True
        detail = f"-> exit {p.returncode}: {(lines[-1] if lines else '')[:100]!r}"
        if not files_ok:
            detail += f" changed {changed}, expected {sorted(writes)}"
        T.record(f"hostile: {name}", p.returncode == code and message_ok and files_ok and extra_ok, detail)
        return p


def check_hostile_outputs(h):
    # the output is an input: refused before any work, whatever path leads to the input
    d = h.folder()
    os.link(h.model, os.path.join(d, "m.t2v"))
    h.row("-o naming the model", d, h.gen("m.t2v", "m.t2v"), 1, ["m.t2v", "never writes over its inputs"])
    os.symlink("m.t2v", os.path.join(d, "link.y4m"))
    h.row("-o: a symlink to the model", d, h.gen("m.t2v", "link.y4m"), 1, ["never writes over its inputs"])
    os.link(os.path.join(d, "m.t2v"), os.path.join(d, "hard.y4m"))
    h.row("-o: a hard link to the model", d, h.gen("m.t2v", "hard.y4m"), 1, ["never writes over its inputs"])
    np.save(os.path.join(d, "lat.npy"), np.zeros((1, 4, 2, 2, 2), np.float32))
    h.row("-o naming the --latents file", d, h.gen(h.model, "lat.npy", "--latents", "lat.npy"), 1, ["lat.npy", "inputs"])
    open(os.path.join(d, "p.txt"), "w").write("a cat")
    cmd = h.gen(h.model, "p.txt")
    cmd.remove("-p"), cmd.remove("a cat")
    h.row("-o naming the --prompt-file", d, cmd + ["--prompt-file", "p.txt"], 1, ["p.txt", "inputs"])
    os.makedirs(os.path.join(d, "frames"))
    os.link(os.path.join(d, "m.t2v"), os.path.join(d, "frames", "frame_0001.ppm"))
    h.row("--frames-dir holding a link to the model", d, h.gen("m.t2v", "v.y4m", "--frames-dir", "frames"), 1,
          ["frame_0001.ppm", "inputs"])
    os.makedirs(os.path.join(d, "dump"))
    os.link(os.path.join(d, "lat.npy"), os.path.join(d, "dump", "latents_init.npy"))
    h.row("--dump holding the --latents file", d, h.gen(h.model, "v2.y4m", "--dump", "dump", "--latents", "lat.npy"),
          1, ["latents_init.npy", "inputs"], writes=["dump/prompt_embeds.npy", "dump/negative_prompt_embeds.npy"])
    sample = os.path.join(d, "sample.npy")
    np.save(sample, np.zeros((1, 4, 2, 8, 8), np.float32))
    np.save(os.path.join(d, "ctx.npy"), np.zeros((1, 77, 32), np.float32))
    h.row("unet OUT.npy naming SAMPLE.npy", d, [h.t2v, "unet", h.model, "sample.npy", "10", "ctx.npy", "sample.npy"], 1,
          ["sample.npy", "inputs"])
    np.save(os.path.join(d, "z.npy"), np.zeros((1, 4, 2, 2), np.float32))
    h.row("vae-decode OUT.npy naming LATENTS.npy", d, [h.t2v, "vae-decode", h.model, "z.npy", "z.npy"], 1, ["inputs"])
    h.row("encode-text OUT.npy naming the model", d, [h.t2v, "encode-text", "m.t2v", "a cat", "m.t2v"], 1, ["inputs"])

    # devices and pipes are written in place, never replaced; their write errors are errors. The devices are
    # reached through links in the row's folder, so that a t2v that replaced its output would replace the
    # link, never the machine's /dev/full or /dev/null.
    d = h.folder()
    os.symlink("/dev/full", os.path.join(d, "full"))
    os.symlink("/dev/null", os.path.join(d, "null"))
    h.row("-o /dev/full: write error reported", d, h.gen(h.model, "full"), 1, ["full", "no space"])
    h.row("-o /dev/null: written in place", d, h.gen(h.model, "null"), 0)
    h.row("npy output /dev/full: write error reported", d, [h.t2v, "encode-text", h.model, "a", "full"], 1, ["no space"])
    T.record("hostile: /dev/full and /dev/null are still character devices",
             stat.S_ISCHR(os.stat("/dev/full").st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode))
    reference = os.path.join(d, "ref.y4m")
    h.row("-o FILE (the reference for the streams)", d, h.gen(h.model, "ref.y4m"), 0, writes=["ref.y4m"])
    want = open(reference, "rb").read() if os.path.exists(reference) else None
    h.row("-o - streams the Y4M to standard output", d, h.gen(h.model, "-"), 0,
          stdout_check=lambda out: out == want and out.startswith(b"YUV4MPEG2 "))
    p = subprocess.Popen(h.gen(h.model, "-"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=d)
    p.stdout.close()
    err = p.stderr.read().decode().strip().splitlines()
    p.wait(timeout=60)
    T.record("hostile: -o - into a closed pipe: exit 1 (EPIPE), not SIGPIPE",
             p.returncode == 1 and len(err) == 1 and "standard output" in err[0], f"-> exit {p.returncode}: {err[-1:]!r}")
    fifo = os.path.join(d, "video.fifo")
    os.mkfifo(fifo)
    got = []
    import threading
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    h.row("-o FIFO: written in place", d, h.gen(h.model, "video.fifo"), 0)
    reader.join(timeout=60)
    T.record("hostile: the FIFO's reader got the video; it is still a FIFO", got == [want] and stat.S_ISFIFO(os.stat(fifo).st_mode))

    # regular files: a temporary created exclusively beside the target, never a planted link
    d = h.folder()
    victim = os.path.join(d, "victim.txt")
    open(victim, "w").write("precious")
    os.symlink("victim.txt", os.path.join(d, "out.y4m.tmp"))
    h.row("a symlink planted at the old temporary name is not followed", d, h.gen(h.model, "out.y4m"), 0,
          writes=["out.y4m"])
    os.symlink("victim.txt", os.path.join(d, "via-link.y4m"))
    h.row("-o a symlink: the link is replaced, its target untouched", d, h.gen(h.model, "via-link.y4m"), 0,
          writes=["via-link.y4m"])
    T.record("hostile: the output replaced the link with a regular file; the target still holds its bytes",
             not os.path.islink(os.path.join(d, "via-link.y4m")) and open(victim).read() == "precious")
    runs = [subprocess.Popen(h.gen(h.model, "same.y4m"), cwd=d, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [r.wait(timeout=120) for r in runs]
    T.record("hostile: two runs writing the same -o both succeed, the file is whole, no temporaries",
             codes == [0, 0] and want and open(os.path.join(d, "same.y4m"), "rb").read() == want
             and not glob.glob(os.path.join(d, "*t2v-tmp*")), f"exit codes {codes}")
    h.row("-o naming a folder", d, h.gen(h.model, "."), 1, ["directory"])
    h.row("--frames-dir whose parent is missing: refused", d, h.gen(h.model, "x.y4m", "--frames-dir", "no/such"), 1,
          ["--frames-dir", "parent folder must exist"])
    h.row("--dump whose parent is missing: refused", d, h.gen(h.model, "x.y4m", "--dump", "no/such"), 1,
          ["--dump", "parent folder must exist"])
    h.row("--frames-dir missing, parent present: created", d, h.gen(h.model, "x.y4m", "--frames-dir", "fr"), 0,
          writes=["x.y4m", "fr", "fr/frame_0000.ppm", "fr/frame_0001.ppm"])


def check_hostile_inputs(h):
    d = h.folder()
    os.mkfifo(os.path.join(d, "model.fifo"))
    h.row("a FIFO as the model: refused without blocking", d, [h.t2v, "tokenize", "model.fifo", "x"], 1,
          ["model.fifo", "not a regular file"], timeout=20)
    os.mkfifo(os.path.join(d, "lat.fifo"))
    h.row("a FIFO with no writer as --latents: no hang", d, h.gen(h.model, "v.y4m", "--latents", "lat.fifo"), 1,
          ["lat.fifo", "not a .npy"], timeout=20)
    h.row("a folder as the model", d, [h.t2v, "tokenize", ".", "x"], 1, ["directory"])
    for label, value in (("NaN", np.nan), ("+Inf", np.inf), ("-Inf", -np.inf)):
        a = np.zeros((1, 4, 2, 2, 2), np.float32)
        a[0, 2, 1, 0, 1] = value
        np.save(os.path.join(d, "lat.npy"), a)
        h.row(f"--latents holding {label}: refused", d, h.gen(h.model, "v.y4m", "--latents", "lat.npy"), 1,
              ["lat.npy", "value 21 of 32", "NaN" if label == "NaN" else "infinite"])
    np.save(os.path.join(d, "sample.npy"), np.full((1, 4, 2, 8, 8), np.nan, np.float32))
    np.save(os.path.join(d, "ctx.npy"), np.zeros((1, 77, 32), np.float32))
    h.row("unet SAMPLE.npy of NaN: refused", d, [h.t2v, "unet", h.model, "sample.npy", "10", "ctx.npy", "o.npy"], 1,
          ["sample.npy", "NaN"])
    np.save(os.path.join(d, "big.npy"), np.full((1, 4, 2, 2), 1e300, np.float64))
    h.row("vae-decode float64 beyond float32's range: refused", d, [h.t2v, "vae-decode", h.model, "big.npy", "o.npy"], 1,
          ["big.npy", "infinite"])
    npy_header_bytes = b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    huge = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + npy_header_bytes.ljust(117) + b"\n" + bytes(10)
    open(os.path.join(d, "huge.npy"), "wb").write(huge)
    h.row("a 138-byte .npy announcing 40 GB: truncated, nothing allocated up front", d,
          [h.t2v, "vae-decode", h.model, "huge.npy", "o.npy"], 1, ["huge.npy", "truncated"])
    # prompts from files and standard input
    open(os.path.join(d, "p.txt"), "w").write("a cat")
    open(os.path.join(d, "nul.txt"), "wb").write(b"a\0cat")
    base = [h.t2v, "generate", h.model, "--frames", "2", "--height", "16", "--width", "16", "--steps", "1", "-q"]
    h.row("--prompt-file", d, base + ["--prompt-file", "p.txt", "-o", "pf.y4m"], 0, writes=["pf.y4m"])
    h.row("-p: the same video as --prompt-file", d, base + ["-p", "a cat", "-o", "pp.y4m"], 0, writes=["pp.y4m"])
    videos = [open(os.path.join(d, f), "rb").read() if os.path.exists(os.path.join(d, f)) else None for f in ("pf.y4m", "pp.y4m")]
    T.record("hostile: --prompt-file gives -p's video", videos[0] is not None and videos[0] == videos[1])
    megabyte = ("a panda playing a guitar on a mountain " * 27000).encode()
    h.row("a 1 MB prompt on standard input (--prompt-file -)", d, base + ["--prompt-file", "-", "-o", "mb.y4m"], 0,
          writes=["mb.y4m"], stdin=megabyte)
    h.row("--negative-prompt-file -", d, base + ["-p", "x", "--negative-prompt-file", "-", "-o", "n.y4m"], 0,
          writes=["n.y4m"], stdin=b"blurry")
    h.row("--prompt-file with a NUL byte", d, base + ["--prompt-file", "nul.txt", "-o", "v.y4m"], 1, ["nul.txt", "NUL"])
    h.row("--prompt-file missing", d, base + ["--prompt-file", "nope.txt", "-o", "v.y4m"], 1, ["cannot open", "nope.txt"])
    h.row("-p and --prompt-file", d, base + ["-p", "x", "--prompt-file", "p.txt", "-o", "v.y4m"], 1, ["not both"])
    h.row("both prompt files on standard input", d,
          base + ["--prompt-file", "-", "--negative-prompt-file", "-", "-o", "v.y4m"], 1, ["standard input"])


def check_hostile_numbers(h):
    d = h.folder()
    np.save(os.path.join(d, "sample.npy"), np.zeros((1, 4, 2, 8, 8), np.float32))
    np.save(os.path.join(d, "ctx.npy"), np.zeros((1, 77, 32), np.float32))
    for value, words in (("0x10", ["--guidance", "0x10"]), ("inf", ["--guidance"]), ("nan", ["--guidance"]),
                         ("1e999", ["--guidance"]), (" 9", ["--guidance"])):
        h.row(f"--guidance {value!r}: refused", d, h.gen(h.model, "v.y4m", "--guidance", value), 1, words)
    for value in ("0x10", "+-3", "4.0", " 2"):
        h.row(f"--steps {value!r}: refused (decimal integers only)", d, h.gen(h.model, "v.y4m", "--steps", value), 1,
              ["--steps", "integer"])
    h.row("--seed -1 is a value (random seed), not an option", d, h.gen(h.model, "s.y4m", "--seed", "-1"), 0,
          writes=["s.y4m"])
    h.row("--guidance -2.5 is a value", d, h.gen(h.model, "g.y4m", "--guidance", "-2.5"), 0, writes=["g.y4m"])
    unet = [h.t2v, "unet", h.model, "sample.npy", None, "ctx.npy", "o.npy"]
    for value in ("1e30", "-1", "1000", "2.5", "0x10", "nan"):
        cmd = list(unet)
        cmd[4] = value
        h.row(f"unet TIMESTEP {value}: refused", d, cmd, 1, ["TIMESTEP", "[0, 999]"])
    cmd = list(unet)
    cmd[4] = "999"
    h.row("unet TIMESTEP 999 (the last one)", d, cmd, 0, writes=["o.npy"])


def check_hostile_model(h):
    d = h.folder()
    bad = os.path.join(d, "bad.t2v")

    def model_row(name, data, words, cmd=None):
        open(bad, "wb").write(data)
        h.row(name, d, cmd or h.gen("bad.t2v", "v.y4m"), 1, words)

    data = h.data
    model_row("model flags not 0", data[:12] + struct.pack("<I", 1) + data[16:], ["bad.t2v", "flags"])
    entries = parse_table(data)
    a, b = entries[10], entries[11]
    out = bytearray(data)
    (off_a,) = struct.unpack_from("<Q", data, a["offset_pos"])
    (off_b, nbytes_b) = struct.unpack_from("<QQ", data, b["offset_pos"])
    struct.pack_into("<Q", out, b["offset_pos"], off_a)  # b's data now starts where a's does
    model_row("two tensors sharing bytes", bytes(out), ["bad.t2v", "overlap", a["name"]])
    for key, value in (("unet.norm_eps", "nan"), ("text_encoder.layer_norm_eps", "-1"), ("vae.scaling_factor", "inf"),
                       ("scheduler.num_train_timesteps", "inf"), ("unet.sample_size", "2147483647"),
                       ("unet.norm_eps", "0x1p-4"), ("unet.in_channels", "4.0"), ("unet.layers_per_block", "-1"),
                       ("scheduler.beta_start", "0x1p-4"), ("scheduler.beta_end", "nan"), ("scheduler.steps_offset", "1e3"),
                       ("text_encoder.hidden_size", "99999999999")):
        cmd = [h.t2v, "generate", "bad.t2v", "-p", "a", "--frames", "1", "--steps", "1", "-q", "-o", "v.y4m"]
        if key != "unet.sample_size":
            cmd += ["-H", "16", "-W", "16"]
        model_row(f"config {key}={value}", with_config(data, key, value), [key.split(".", 1)[1], value], cmd)
    model_row("config beta_start=2 (out of range)", with_config(data, "scheduler.beta_start", "2"), ["beta_start"])
    model_row("config without a key it needs (unet.norm_eps)",
              with_config(data, "unet.norm_eps", "1e-5").replace(b"unet.norm_eps=", b"unet.norm_epz="), ["unet.norm_eps"])

    # a stage that makes NaN stops the run, naming the stage and the step
    for tensor, words in (("text_encoder/text_model.final_layer_norm.bias", ["text states of the prompt"]),
                          ("unet/conv_out.bias", ["noise prediction at step 1 of 2"]),
                          ("vae/decoder.conv_out.bias", ["decoded frame 1 of 2"])):
        model_row(f"NaN weights in {tensor}: stopped", with_tensor_nan(data, tensor), words + ["non-finite"])
    open(bad, "wb").write(with_tensor_nan(data, "unet/conv_out.bias"))
    h.row("unet command: a NaN output is refused", d, [h.t2v, "unet", "bad.t2v", os.path.join(T.OUT, "sample_cli.npy"),
          "10", os.path.join(T.OUT, "ctx_cli.npy"), "o.npy", "-q"], 1, ["unet output", "non-finite"])


def check_hostile(t2v, model):
    """t2v: the plain (no OpenMP) build, which does not spin on a busy machine: the table runs it ~150 times"""
    h = Hostile(t2v, model)
    before = snapshot(os.path.dirname(model)).get(os.path.basename(model))
    check_hostile_outputs(h)
    check_hostile_inputs(h)
    check_hostile_numbers(h)
    check_hostile_model(h)
    T.record("hostile: the model file is unchanged after the table",
             snapshot(os.path.dirname(model)).get(os.path.basename(model)) == before)


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
    check_hostile(exes["plain"], model)
    check_video(t2v, model)
    if have_golden:
        check_export(t2v, model)
    else:
        T.skip("export.py's reading of snapshots (fp16, bf16, legacy names, .bin, hub id, broken folders)",
               "!! no golden snapshot folder")
