#!/usr/bin/env python3
"""make bench's baseline: the real Diffusers 0.30.3 modules (from ../shared/refenv, not installed by make) with the
weights of the same t2v model file, on a random input. make bench runs it when the refenv is found
(BENCH_REFENV=DIR, default /tmp/refenv).

    PYTHONPATH=REFENV_DIR python3 test/diffusers_bench.py MODEL.t2v --shape B,4,F,H,W | N,4,H,W [--threads N]
        [--repeat R] [--check T2V_OUT.npy SAMPLE.npy CONTEXT.npy T]
        UNet3DConditionModel (ModelScope) or UNet2DConditionModel (Stable Diffusion), as the file holds
    PYTHONPATH=REFENV_DIR python3 test/diffusers_bench.py MODEL.t2v --vae-decode --shape N,4,h,w [--threads N]
        AutoencoderKL.decode of N latents
One untimed call comes first (it counts the GFLOP and warms up); then R timed ones.

The module is built from the file's unet.* (or vae.*) config, then each parameter is pointed at a memory-mapped
view of the file's tensor (as test/torch_unet.py does), so its weights are mapped, not copied. Peak RSS is
measured from after loading (the kernel's high-water mark is reset through /proc/self/clear_refs) so that the
random initialisation of the freshly built module does not count; it includes the mapped weights the call
touches. Prints e.g.
    diffusers_bench: forward 12.3 s (min of 1), peak RSS 4000 MiB, threads 2, shape 2,4,64,64, blas PATH
--check: run on the given sample/context/timestep and print max|t2v - diffusers| / max|diffusers| (exit 1
above 1e-4): the two programs compute the same function, so the timing compares like with like."""
import argparse
import os
import sys
import time

import numpy as np
import torch

import torch113_fixes  # noqa: F401  (the refenv's patches for torch 1.13)
from diffusers import AutoencoderKL, UNet2DConditionModel, UNet3DConditionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import load_t2v, loaded_blas  # noqa: E402


def vm_hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class FlopCounter:
    """GFLOP of one forward from the shapes it runs: 2 * multiply-adds of every Conv2d, Conv3d and Linear and of the
    attention's two matmuls (torch.baddbmm for the scores, torch.bmm for probabilities x values, which is how
    Diffusers' AttnProcessor computes attention on torch 1.13). Norms, activations, softmax and the other
    elementwise work are left out (a few percent at most)."""

    def __init__(self, model):
        self.flops = 0
        self.handles = []
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                self.handles.append(m.register_forward_hook(self.conv))
            elif isinstance(m, torch.nn.Linear):
                self.handles.append(m.register_forward_hook(self.linear))
        self.bmm, self.baddbmm = torch.bmm, torch.baddbmm
        torch.bmm = lambda a, b, *args, **kw: self.matmul(self.bmm, a, b, *args, **kw)
        torch.baddbmm = lambda c, a, b, *args, **kw: self.matmul(lambda x, y, *r, **k: self.baddbmm(c, x, y, *r, **k),
                                                                 a, b, *args, **kw)

    def conv(self, m, inputs, out):
        self.flops += 2 * out.numel() * (m.in_channels // m.groups) * int(np.prod(m.kernel_size))

    def linear(self, m, inputs, out):
        self.flops += 2 * out.numel() * m.in_features

    def matmul(self, fn, a, b, *args, **kw):
        self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return fn(a, b, *args, **kw)

    def close(self):
        for h in self.handles:
            h.remove()
        torch.bmm, torch.baddbmm = self.bmm, self.baddbmm
        return self.flops / 1e9


def build(path, component):
    config, weights = load_t2v(path, component)
    if component == "vae":
        cls = AutoencoderKL
    else:
        is_3d = any("3D" in block for block in config.get("down_block_types", []))
        cls = UNet3DConditionModel if is_3d else UNet2DConditionModel
    model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")}).eval()
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(weights))
    extra = sorted(set(weights) - set(params))
    if missing or extra:
        raise SystemExit(f"{path}: weights do not match {cls.__name__}: missing {missing[:5]}, extra {extra[:5]}")
    for name, p in params.items():
        if tuple(p.shape) != tuple(weights[name].shape):
            raise SystemExit(f"{name}: shape {tuple(weights[name].shape)} != {tuple(p.shape)}")
        p.data = weights[name]   # a view of the mapped file: no copy
    return model, config


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--shape", default="2,4,64,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timestep", type=int, default=981)
    ap.add_argument("--check", nargs=4, metavar=("T2V_OUT", "SAMPLE", "CONTEXT", "T"))
    ap.add_argument("--vae-decode", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model, config = build(a.model, "vae" if a.vae_decode else "unet")
    print(f"diffusers_bench: {type(model).__name__} built and mapped in {time.time() - t0:.1f} s", flush=True)
    with torch.no_grad():
        if a.check:
            got = np.load(a.check[0])
            sample, context = torch.from_numpy(np.load(a.check[1])), torch.from_numpy(np.load(a.check[2]))
            ref = model(sample, torch.tensor(int(float(a.check[3]))), context).sample.numpy()
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            print(f"diffusers_bench: max|t2v - diffusers| / max|diffusers| = {err:.2e}")
            return 0 if err <= 1e-4 else 1
        shape = [int(x) for x in a.shape.split(",")]
        g = torch.Generator().manual_seed(0)
        sample = torch.randn(shape, generator=g)
        if a.vae_decode:
            def call():
                return model.decode(sample)
        else:
            context = torch.randn((shape[0], 77, int(config["cross_attention_dim"])), generator=g)
            timestep = torch.tensor(a.timestep)

            def call():
                return model(sample, timestep, context)
        counter = FlopCounter(model)                # counts on a warm-up run (or an untimed one)
        call()
        gflop = counter.close()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                        # reset VmHWM to the current RSS
        except OSError:
            pass
        times = []
        for _ in range(a.repeat):
            t = time.time()
            out = call().sample
            times.append(time.time() - t)
    print(f"diffusers_bench: {gflop:.1f} GFLOP (convolutions, linear layers, attention matmuls)")
    print(f"diffusers_bench: forward {min(times):.2f} s (min of {len(times)}), {gflop / min(times):.1f} GFLOP/s, "
          f"peak RSS {vm_hwm_mib():.0f} MiB, threads {a.threads}, shape {a.shape}, max|out| "
          f"{float(out.abs().max()):.3g}, blas {loaded_blas()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
