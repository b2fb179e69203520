#!/usr/bin/env python3
"""Makes test/vid2vid/: reference tensors of the real Diffusers 0.30.3 VideoToVideoSDPipeline on the golden tiny
model, for `make test` (which does not run this script: it needs the real Diffusers, see ../shared/refenv).

    PYTHONPATH=REFENV_DIR /usr/bin/python3 test/make_vid2vid_reference.py [GOLDEN_TINY_DIR]

Each case runs the pipeline with prompt_embeds / negative_prompt_embeds from the golden fixture, an input video
made here (smooth moving shapes, (F, H, W, 3) in [0, 1]) and torch.Generator("cpu").manual_seed(seed), and keeps
what t2v's `generate --init-frames ... --dump DIR` writes: the two noise draws (latent_dist.sample's and
add_noise's), the scaled video latents, the noised starting latents, the timesteps, the latents after every
step and the frames."""
import json
import os
import sys

import numpy as np
import torch

import torch113_fixes  # noqa: F401  (the refenv's patches for torch 1.13)
import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, UNet3DConditionModel
from diffusers import VideoToVideoSDPipeline
from diffusers.models.autoencoders import vae as vae_module
from diffusers.pipelines.text_to_video_synthesis import pipeline_text_to_video_synth_img2img as pipeline_module

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vid2vid")

# (name, scheduler, strength, steps, frames, height, width, seed): DDIM and DPM, strength 0.6 and 1.0, and an odd
# latent size (9 x 5), which takes the UNet's forward_upsample_size path
CASES = [
    ("ddim_s0.6", "ddim", 0.6, 5, 3, 48, 64, 0),
    ("ddim_s1.0", "ddim", 1.0, 3, 3, 48, 64, 1),
    ("dpm_s0.6", "dpm", 0.6, 5, 3, 48, 64, 2),
    ("dpm_s1.0", "dpm", 1.0, 3, 2, 48, 64, 3),
    ("ddim_odd_s0.6", "ddim", 0.6, 4, 2, 40, 72, 4),
]
GUIDANCE = 15.0  # VideoToVideoSDPipeline's default


def input_video(frames, height, width):
    """A disc moving over colour gradients: smooth, like a real video, and different in every frame."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    video = np.empty((frames, height, width, 3), np.float32)
    for f in range(frames):
        cx, cy = width * (0.3 + 0.15 * f), height * 0.5
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < (0.25 * height) ** 2).astype(np.float32)
        video[f, ..., 0] = 0.8 * x / width * (1 - disc) + 0.9 * disc
        video[f, ..., 1] = 0.7 * y / height * (1 - disc) + 0.2 * disc
        video[f, ..., 2] = 0.5 + 0.4 * np.sin(0.2 * x + 0.5 * f) * (1 - disc)
    return np.clip(video, 0, 1)


def recorder(fn, into):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        into.append(out.clone())
        return out
    return wrapped


def run_case(golden, name, sched, strength, steps, frames, height, width, seed):
    model = os.path.join(golden, "model")
    unet = UNet3DConditionModel.from_pretrained(os.path.join(model, "unet"))
    vae = AutoencoderKL.from_pretrained(os.path.join(model, "vae"))
    scheduler = DDIMScheduler.from_pretrained(os.path.join(model, "scheduler"))
    if sched == "dpm":
        scheduler = DPMSolverMultistepScheduler.from_config(scheduler.config)
    pipe = VideoToVideoSDPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    prompt_embeds = torch.from_numpy(np.load(os.path.join(golden, "pipeline", "prompt_embeds.npy")))
    negative_embeds = torch.from_numpy(np.load(os.path.join(golden, "pipeline", "negative_prompt_embeds.npy")))
    video = input_video(frames, height, width)

    draws, added, stepped = [], [], []
    vae_module.randn_tensor = recorder(diffusers.utils.torch_utils.randn_tensor, draws)        # latent_dist.sample
    pipeline_module.randn_tensor = recorder(diffusers.utils.torch_utils.randn_tensor, draws)   # add_noise's noise
    add_noise, step = scheduler.add_noise, scheduler.step

    def add_noise_recorded(original, noise, timesteps):
        out = add_noise(original, noise, timesteps)
        added.append((original.clone(), out.clone()))
        return out

    def step_recorded(model_output, timestep, sample, **kwargs):
        out = step(model_output, timestep, sample, **kwargs)
        stepped.append((int(timestep), out.prev_sample.clone()))
        return out

    scheduler.add_noise, scheduler.step = add_noise_recorded, step_recorded
    result = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, video=video, strength=strength,
                  num_inference_steps=steps, guidance_scale=GUIDANCE, generator=torch.Generator("cpu").manual_seed(seed),
                  output_type="np").frames
    assert len(draws) == 2 and len(added) == 1, (len(draws), len(added))

    def video_layout(x):  # (F, C, h, w) -> (1, C, F, h, w)
        return x.numpy()[None].transpose(0, 2, 1, 3, 4).astype(np.float32)

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "init_frames.npy"), video)
    np.save(os.path.join(d, "sample_noise.npy"), draws[0].numpy())
    np.save(os.path.join(d, "noise.npy"), draws[1].numpy())
    np.save(os.path.join(d, "video_latents.npy"), added[0][0].numpy())
    np.save(os.path.join(d, "latents_init.npy"), video_layout(added[0][1]))
    np.save(os.path.join(d, "timesteps.npy"), np.array([t for t, _ in stepped], np.int64))
    np.save(os.path.join(d, "latents.npy"), np.stack([video_layout(x) for _, x in stepped]))
    np.save(os.path.join(d, "frames.npy"), np.asarray(result, np.float32))
    settings = {"scheduler": sched, "strength": strength, "steps": steps, "frames": frames, "height": height,
                "width": width, "seed": seed, "guidance": GUIDANCE, "timesteps": [t for t, _ in stepped]}
    print(name, settings, flush=True)
    return settings


def main():
    golden = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "golden", "tiny")
    torch.set_num_threads(1)
    manifest = {"made_by": "test/make_vid2vid_reference.py with diffusers " + diffusers.__version__ + ", torch "
                + torch.__version__, "cases": {}}
    for case in CASES:
        manifest["cases"][case[0]] = run_case(golden, *case)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
