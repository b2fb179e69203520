#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz_targets.c), from a test model and the hostile cases of make test:
    make_seeds.py MODEL.t2v OUT_DIR     writes OUT_DIR/{model,npy,config,tokenizer,cli}/NAME
MODEL is the small test model (export.py --random tiny, or the golden one). The seeds are generated, not
committed: they follow the model format and the command line as they change."""
import io
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli_checks import parse_table, with_config  # noqa: E402  (the hostile table's model editors)


def npy_bytes(array, **kw):
    f = io.BytesIO()
    np.save(f, array, **kw)
    return f.getvalue()


def model_seeds(data):
    """the header of the model (magic to the end of the tensor table: fuzz_targets.c pads it with zeros),
    and hostile headers"""
    entries = parse_table(data)
    end = entries[-1]["offset_pos"] + 32
    head = data[:end]
    seeds = {"header": head, "flags": head[:12] + struct.pack("<I", 1) + head[16:], "empty": b"",
             "magic_only": head[:8], "truncated_table": head[:end - 100]}
    overlap = bytearray(head)
    off = struct.unpack_from("<Q", head, entries[10]["offset_pos"])[0]
    struct.pack_into("<Q", overlap, entries[11]["offset_pos"], off)
    seeds["overlap"] = bytes(overlap)
    for key, value in (("unet.norm_eps", "nan"), ("vae.scaling_factor", "inf"), ("unet.sample_size", "2147483647"),
                       ("text_encoder.layer_norm_eps", "-1"), ("scheduler.num_train_timesteps", "inf")):
        edited = with_config(data, key, value)
        seeds[f"config_{key}"] = edited[:parse_table(edited)[-1]["offset_pos"] + 32]
    return seeds


def config_seeds(data):
    (size,) = struct.unpack_from("<Q", data, 16)
    text = data[24:24 + size]
    seeds = {"model_config": text, "empty": b"", "no_newline": b"unet.norm_eps=1e-5", "no_equals": b"abc\n"}
    for key, value in (("unet.norm_eps", "nan"), ("scheduler.num_train_timesteps", "inf"),
                       ("scheduler.lambda_min_clipped", "-inf"), ("scheduler.beta_start", "0x1p-4"),
                       ("unet.block_out_channels", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"),
                       ("scheduler.solver_order", "3"), ("vae.use_quant_conv", "maybe")):
        seeds[f"{key}={value}"] = f"{key}={value}\n".encode()
    return seeds


def npy_seeds():
    seeds = {"f4": npy_bytes(np.arange(24, dtype=np.float32).reshape(2, 3, 4)),
             "f8": npy_bytes(np.linspace(-1, 1, 10)), "i8": npy_bytes(np.arange(6, dtype=np.int64)),
             "i4": npy_bytes(np.arange(6, dtype=np.int32).reshape(3, 2)), "scalar": npy_bytes(np.float32(1.5)),
             "nan": npy_bytes(np.array([1, np.nan], np.float32)), "inf": npy_bytes(np.array([np.inf], np.float64)),
             "big": npy_bytes(np.array([1e300])), "fortran": npy_bytes(np.asfortranarray(np.zeros((2, 3), np.float32))),
             "big_endian": npy_bytes(np.zeros(3, ">f4")), "f2": npy_bytes(np.zeros(3, np.float16)),
             "zero_dim": npy_bytes(np.zeros((0, 4), np.float32)), "latents": npy_bytes(np.zeros((1, 4, 2, 2, 2), np.float32))}
    v2 = bytearray(seeds["f4"])
    seeds["truncated"] = bytes(v2[:-5])
    seeds["v2"] = b"\x93NUMPY\x02\x00" + struct.pack("<I", 118) + bytes(v2[10:128]) + bytes(v2[128:])
    seeds["huge_shape"] = seeds["f4"].replace(b"(2, 3, 4)", b"(9999, 4)")
    return seeds


def tokenizer_seeds():
    return {"plain": b"a panda playing a guitar", "empty": b"", "bangs": b"wow!!! great!!",
            "emoji": "\U0001F469\u200d\U0001F469\u200d\U0001F467 \U0001F43C".encode(),
            "invalid_utf8": b"caf\xc3 \xff\xfe broken \xe2\x82", "html": b"&amp; &lt;b&gt; &#x1F43C; &nbsp;",
            "control": b"a\x01b\x7fc", "combining": "\u0301\u0301x e\u0301".encode(), "cjk": "熊猫 판다".encode(),
            "long": b"a panda " * 2000}


def cli_seeds():
    lists = {"generate": ["-p", "a cat", "-o", "v.y4m", "--frames", "2", "--steps", "1", "--guidance", "7.5"],
             "negatives": ["--seed", "-1", "--guidance", "-2.5", "-1"], "hex": ["--guidance", "0x10"],
             "inf": ["--guidance", "inf"], "missing_value": ["--steps"], "unknown": ["--bogus", "1"],
             "files": ["--prompt-file", "p.txt", "--negative-prompt-file", "-", "--latents", "l.npy",
                       "--frames-dir", "d", "--dump", "d2", "-o", "-"],
             "choices": ["--scheduler", "dpm", "--tokenizer", "openclip", "--yuv444", "-q", "--threads", "2"],
             "many": ["x"] * 20}
    return {name: b"\0".join(a.encode() for a in args) for name, args in lists.items()}


def main():
    model, out = sys.argv[1], sys.argv[2]
    data = open(model, "rb").read()
    corpora = {"model": model_seeds(data), "config": config_seeds(data), "npy": npy_seeds(),
               "tokenizer": tokenizer_seeds(), "cli": cli_seeds()}
    for target, seeds in corpora.items():
        folder = os.path.join(out, target)
        os.makedirs(folder, exist_ok=True)
        for name, blob in seeds.items():
            with open(os.path.join(folder, name.replace("/", "_")), "wb") as f:
                f.write(blob)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
