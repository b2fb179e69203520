#!/usr/bin/env python3
"""Makes test/t2vz/: reference tensors of the real Diffusers 0.30.3 TextToVideoZeroPipeline on the golden
t2vz-tiny model, for cases ../shared/golden/t2vz-tiny does not cover. `make test` does not run this script (it
needs the real Diffusers, see ../shared/refenv):

    PYTHONPATH=REFENV_DIR /usr/bin/python3 test/make_t2vz_reference.py [GOLDEN_T2VZ_TINY_DIR]

Cases (all with the fixture's pipeline/prompt_embeds.npy and negative_prompt_embeds.npy, guidance 7.5):
- chunks_pndm: a long video made as Diffusers' text_to_video_zero.md shows it: 5 frames in chunks of 3, chunk
  starts every chunk_size - 1 frames, each call with frame_ids [0] + range(start, end), the generator seeded
  anew with the same seed, keeping output.images[1:] of each call. Saved: the frames (5, 48, 48, 3) and the
  kept latents (5, 4, 6, 6) (each call's output_type="latent" run, identical up to decoding).
- odd_ddim: one call at an odd latent size (56x72 pixels, latents 7x9: the UNet's upsample_size path), DDIM,
  other t0/t1 than the fixture and a motion that moves both ways. Saved: frames and latents.
Each case's parameters go to cases.json, which the check reads too."""
import json
import os
import sys

import numpy as np
import torch

import torch113_fixes  # noqa: F401  (the refenv's patches for torch 1.13)
import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel
from diffusers import TextToVideoZeroPipeline

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "t2vz")

CASES = {
    "chunks_pndm": dict(scheduler="pndm", frames=5, chunk_size=3, height=48, width=48, steps=5, t0=2, t1=3,
                        motion_x=128.0, motion_y=-64.0, seed=3),
    "odd_ddim": dict(scheduler="ddim", frames=2, chunk_size=0, height=56, width=72, steps=6, t0=1, t1=4,
                     motion_x=-96.0, motion_y=160.0, seed=5),
}
GUIDANCE = 7.5


def main():
    golden = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "golden", "t2vz-tiny")
    model = os.path.join(golden, "model")
    assert diffusers.__version__ == "0.30.3", diffusers.__version__
    torch.set_num_threads(2)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model, "unet")).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(model, "vae")).eval()
    pndm = PNDMScheduler.from_pretrained(os.path.join(model, "scheduler"))
    embeds = torch.from_numpy(np.load(os.path.join(golden, "pipeline", "prompt_embeds.npy")))
    negative = torch.from_numpy(np.load(os.path.join(golden, "pipeline", "negative_prompt_embeds.npy")))
    os.makedirs(OUT, exist_ok=True)
    for name, c in CASES.items():
        scheduler = pndm if c["scheduler"] == "pndm" else DDIMScheduler.from_config(pndm.config)
        pipe = TextToVideoZeroPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        # the pipeline takes no prompt_embeds: its encode_prompt returns the fixture's (prompt, negative) pair
        pipe.encode_prompt = lambda *args, **kwargs: (embeds, negative)
        n = c["frames"]
        if c["chunk_size"]:
            starts = list(range(0, n, c["chunk_size"] - 1))
            calls = [[0] + list(range(s, n if i == len(starts) - 1 else starts[i + 1])) for i, s in enumerate(starts)]
        else:
            calls = [list(range(n))]
        frames, latents = [], []
        for ids in calls:
            run = {}
            for output_type in ("latent", "np"):
                generator = torch.Generator("cpu").manual_seed(c["seed"])
                out = pipe(prompt="unused", video_length=len(ids), height=c["height"], width=c["width"],
                           num_inference_steps=c["steps"], guidance_scale=GUIDANCE, generator=generator,
                           motion_field_strength_x=c["motion_x"], motion_field_strength_y=c["motion_y"],
                           t0=c["t0"], t1=c["t1"], frame_ids=None if not c["chunk_size"] else ids,
                           output_type=output_type)
                run[output_type] = np.asarray(out.images)
            keep = slice(1, None) if c["chunk_size"] else slice(None)
            latents.append(run["latent"][keep])
            frames.append(run["np"][keep])
        frames, latents = np.concatenate(frames).astype(np.float32), np.concatenate(latents).astype(np.float32)
        assert frames.shape == (n, c["height"], c["width"], 3), frames.shape
        np.save(os.path.join(OUT, f"{name}_frames.npy"), frames)
        np.save(os.path.join(OUT, f"{name}_latents.npy"), latents)
        print(name, "calls", calls, "frames", frames.shape, "latents", latents.shape,
              "frame std", float(frames.std()))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"diffusers": diffusers.__version__, "torch": torch.__version__, "guidance": GUIDANCE,
                   "cases": CASES}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
