#!/usr/bin/env python3
"""A REPLICA of Diffusers 0.30.3's UNet3DConditionModel.forward (not Diffusers itself) as a Diffusers user runs it
on CPU, float32, torch < 2 (Debian's torch 1.13), rebuilt from torch.nn.functional calls. make bench compares
against the real Diffusers instead (test/diffusers_bench.py, through ../shared/refenv); this replica stays for a
machine without the refenv, for its --check mode, and for load_t2v(), which maps a t2v file's tensors for both.

It issues the same tensor operations, in the same order, with the
same layouts, that Diffusers 0.30.3 issues for this model on torch 1.13 (where `F.scaled_dot_product_attention`
does not exist, so every Attention uses `AttnProcessor`: to_q/to_k/to_v Linears, head_to_batch_dim reshapes,
`torch.baddbmm(torch.empty(...), q, k^T, beta=0, alpha=head_dim**-0.5)`, softmax, `torch.bmm`, batch_to_head_dim,
to_out Linear, dropout (identity in eval), `/ rescale_output_factor`). Modules map one to one onto the functions
below; nn.Module wrappers (Conv2d, GroupNorm, ...) are replaced by the functional op their forward calls, with
the same arguments. Everything runs under torch.no_grad(), as TextToVideoSDPipeline.__call__ does.

Weights come from a t2v model file (see weights/README.md), memory-mapped: each `unet/*` tensor is a
torch.from_numpy view of a numpy.memmap of the file, so the model is not copied into anonymous memory.

Usage (with Debian's /usr/bin/python3, which has torch 1.13 and numpy):
    torch_unet.py MODEL.t2v --shape B,C,F,H,W [--threads N] [--repeat R] [--seed S] [--timestep T]
        random N(0,1) sample of that shape and random context (B, 77, cross_attention_dim), timestep 981 (an int64
        tensor, as the pipeline passes scheduler timesteps); one warm-up forward when R > 1; prints e.g.
        torch_unet: forward 12.34 s (min of 1), peak RSS 8123 MiB, threads 2, shape 2,4,16,32,32, blas /path/libblas.so.3
        (after a line with the load time, the output's max|x| and each timed run's process CPU time / wall time)
    torch_unet.py MODEL.t2v --check SAMPLE.npy T CONTEXT.npy REF.npy [--threads N] [--save OUT.npy]
        forward on the given inputs and print max|out - ref| / max|ref|; exit 1 above --tol (default 1e-5)

BLAS: torch's Linear / bmm / baddbmm go through the BLAS library torch was linked with. Debian's python3-torch uses
the libblas.so.3 alternative, which is netlib's reference BLAS unless another one is installed (~2.4 GFLOP/s on
2 cores here, against ~170 with OpenBLAS and ~200 for oneDNN convolutions), whereas a pip torch wheel bundles MKL.
For a realistic baseline install OpenBLAS, which Debian's alternatives then hand to torch:
    apt-get install libopenblas0-pthread
(or, without installing it, point the loader at an unpacked copy: LD_LIBRARY_PATH=.../openblas-pthread).
The forward line names the BLAS library actually loaded.

--zero-scores: start baddbmm from torch.zeros instead of torch.empty. torch 1.13's small-matrix baddbmm kernel
(k*m*n < 400, e.g. the tiny golden model's temporal attention) computes beta * uninitialised memory, so Diffusers'
beta=0 call can turn a NaN already in that memory into a NaN score; the golden data were made with this fix.
The full-size model (head_dim 64) takes that path only with 1 or 2 frames (64*F*F < 400), so timings are the same.
"""
import argparse
import math
import os
import resource
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

MAGIC = b"T2VMODEL"
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i4"), 3: np.dtype("u1")}


# ----------------------------------------------------------------------------------------------- model file

def parse_config_value(text):
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    items = text.split(",")
    values = []
    for item in items:
        try:
            values.append(int(item))
        except ValueError:
            try:
                values.append(float(item))
            except ValueError:
                values.append(item)
    return values[0] if len(values) == 1 and "," not in text else values


def load_t2v(path, component="unet"):
    """-> (config dict of `component.*` lines, {name without 'component/': torch tensor viewing a memmap})."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:8] != MAGIC:
            raise SystemExit(f"{path}: not a t2v model file")
        version, _flags, config_size = struct.unpack("<IIQ", head[8:24])
        if version != 1:
            raise SystemExit(f"{path}: unsupported version {version}")
        config_text = f.read(config_size).decode("utf-8")
        (n_tensors,) = struct.unpack("<I", f.read(4))
        table = []
        for _ in range(n_tensors):
            (name_len,) = struct.unpack("<H", f.read(2))
            name = f.read(name_len).decode("utf-8")
            code, ndim, _group = struct.unpack("<BBI", f.read(6))
            shape = struct.unpack(f"<{ndim}q", f.read(8 * ndim)) if ndim else ()
            offset, size, _so, _ss = struct.unpack("<QQQQ", f.read(32))
            table.append((name, code, shape, offset, size))
    config = {}
    for line in config_text.splitlines():
        key, _, value = line.partition("=")
        if key.startswith(component + "."):
            config[key[len(component) + 1:]] = parse_config_value(value)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    weights = {}
    prefix = component + "/"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the read-only memmap is not writable; nothing writes it
        for name, code, shape, offset, size in table:
            if not name.startswith(prefix):
                continue
            if code != 0:
                raise SystemExit(f"{path}: {name} is not float32 (quantised files are not supported here)")
            arr = np.ndarray(shape, dtype=DTYPES[0], buffer=mm, offset=offset)
            assert arr.nbytes == size, name
            weights[name[len(prefix):]] = torch.from_numpy(arr)
    return config, weights


def as_list(value):
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------------------------------- nn wrappers
# Each is what the nn.Module's forward calls (torch 1.13), with the module's arguments.

def linear(W, name, x):                                            # nn.Linear
    return F.linear(x, W[name + ".weight"], W.get(name + ".bias"))


def conv2d(W, name, x, stride=1, padding=1):                      # nn.Conv2d (padding_mode 'zeros')
    return F.conv2d(x, W[name + ".weight"], W[name + ".bias"], stride, padding)


def group_norm(W, name, x, groups, eps):                         # nn.GroupNorm(affine=True)
    return F.group_norm(x, groups, W[name + ".weight"], W[name + ".bias"], eps)


def layer_norm(W, name, x, eps):                                 # nn.LayerNorm(dim, eps, elementwise_affine=True)
    w = W[name + ".weight"]
    return F.layer_norm(x, (w.shape[0],), w, W[name + ".bias"], eps)


def silu(x):                                                      # nn.SiLU()
    return F.silu(x)


def dropout(x, p):                                                # nn.Dropout(p) in eval mode
    return F.dropout(x, p, False, False)


# ----------------------------------------------------------------------------------------------- embeddings

def get_timestep_embedding(timesteps, dim, flip_sin_to_cos=True, downscale_freq_shift=0, scale=1, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32)
    exponent = exponent / (half - downscale_freq_shift)
    emb = torch.exp(exponent)
    emb = timesteps[:, None].float() * emb[None, :]
    emb = scale * emb
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def timestep_embedding(W, name, sample):                          # TimestepEmbedding (no cond_proj, no post_act)
    sample = linear(W, name + ".linear_1", sample)
    sample = silu(sample)
    return linear(W, name + ".linear_2", sample)


# ----------------------------------------------------------------------------------------------- attention

class Opts:
    zero_scores = False


def head_to_batch_dim(t, heads):
    b, s, dim = t.shape
    t = t.reshape(b, s * 1, heads, dim // heads)
    t = t.permute(0, 2, 1, 3)
    return t.reshape(b * heads, s * 1, dim // heads)


def batch_to_head_dim(t, heads):
    bh, s, d = t.shape
    t = t.reshape(bh // heads, heads, s, d)
    return t.permute(0, 2, 1, 3).reshape(bh // heads, s, d * heads)


def attention(W, name, hidden_states, encoder_hidden_states, heads, dim_head):
    """Attention + AttnProcessor (no mask, no group_norm/spatial_norm/norm_cross, no residual_connection)."""
    scale = dim_head ** -0.5
    query = linear(W, name + ".to_q", hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    key = linear(W, name + ".to_k", encoder_hidden_states)
    value = linear(W, name + ".to_v", encoder_hidden_states)
    query = head_to_batch_dim(query, heads)
    key = head_to_batch_dim(key, heads)
    value = head_to_batch_dim(value, heads)
    # Attention.get_attention_scores (upcast_attention / upcast_softmax False)
    alloc = torch.zeros if Opts.zero_scores else torch.empty
    baddbmm_input = alloc(query.shape[0], query.shape[1], key.shape[1], dtype=query.dtype, device=query.device)
    scores = torch.baddbmm(baddbmm_input, query, key.transpose(-1, -2), beta=0, alpha=scale)
    del baddbmm_input
    probs = scores.softmax(dim=-1)
    del scores
    probs = probs.to(query.dtype)
    hidden_states = torch.bmm(probs, value)
    hidden_states = batch_to_head_dim(hidden_states, heads)
    hidden_states = linear(W, name + ".to_out.0", hidden_states)
    hidden_states = dropout(hidden_states, 0.0)
    hidden_states = hidden_states / 1.0                          # rescale_output_factor
    return hidden_states


def geglu(W, name, x):
    x = linear(W, name + ".proj", x)
    x, gate = x.chunk(2, dim=-1)
    return x * F.gelu(gate)


def feed_forward(W, name, x):
    x = geglu(W, name + ".net.0", x)
    x = dropout(x, 0.0)
    return linear(W, name + ".net.2", x)


def basic_transformer_block(W, name, hidden_states, encoder_hidden_states, heads, dim_head):
    """BasicTransformerBlock, norm_type 'layer_norm' (eps 1e-5), attn1 self, attn2 cross (or self when
    encoder_hidden_states is None: the temporal blocks' double_self_attention), GEGLU feed-forward."""
    norm = layer_norm(W, name + ".norm1", hidden_states, 1e-5)
    out = attention(W, name + ".attn1", norm, None, heads, dim_head)
    hidden_states = out + hidden_states
    if hidden_states.ndim == 4:
        hidden_states = hidden_states.squeeze(1)
    norm = layer_norm(W, name + ".norm2", hidden_states, 1e-5)
    out = attention(W, name + ".attn2", norm, encoder_hidden_states, heads, dim_head)
    hidden_states = out + hidden_states
    norm = layer_norm(W, name + ".norm3", hidden_states, 1e-5)
    out = feed_forward(W, name + ".ff", norm)
    hidden_states = out + hidden_states
    if hidden_states.ndim == 4:
        hidden_states = hidden_states.squeeze(1)
    return hidden_states


def _blocks(W, prefix):
    n = 0
    while f"{prefix}.{n}.norm1.weight" in W:
        n += 1
    return [f"{prefix}.{i}" for i in range(n)]


def transformer_2d(W, name, hidden_states, encoder_hidden_states, heads, dim_head, groups):
    """Transformer2DModel, continuous input, use_linear_projection=True."""
    batch, _, height, width = hidden_states.shape
    residual = hidden_states
    hidden_states = group_norm(W, name + ".norm", hidden_states, groups, 1e-6)
    inner_dim = hidden_states.shape[1]
    hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner_dim)
    hidden_states = linear(W, name + ".proj_in", hidden_states)
    for block in _blocks(W, name + ".transformer_blocks"):
        hidden_states = basic_transformer_block(W, block, hidden_states, encoder_hidden_states, heads, dim_head)
    hidden_states = linear(W, name + ".proj_out", hidden_states)
    hidden_states = hidden_states.reshape(batch, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
    return hidden_states + residual


def transformer_temporal(W, name, hidden_states, num_frames, heads, dim_head, groups):
    """TransformerTemporalModel (no encoder_hidden_states reach it from the 3D blocks)."""
    batch_frames, channel, height, width = hidden_states.shape
    batch_size = batch_frames // num_frames
    residual = hidden_states
    hidden_states = hidden_states[None, :].reshape(batch_size, num_frames, channel, height, width)
    hidden_states = hidden_states.permute(0, 2, 1, 3, 4)
    hidden_states = group_norm(W, name + ".norm", hidden_states, groups, 1e-6)
    hidden_states = hidden_states.permute(0, 3, 4, 2, 1).reshape(batch_size * height * width, num_frames, channel)
    hidden_states = linear(W, name + ".proj_in", hidden_states)
    for block in _blocks(W, name + ".transformer_blocks"):
        hidden_states = basic_transformer_block(W, block, hidden_states, None, heads, dim_head)
    hidden_states = linear(W, name + ".proj_out", hidden_states)
    hidden_states = (
        hidden_states[None, None, :]
        .reshape(batch_size, height, width, num_frames, channel)
        .permute(0, 3, 4, 1, 2)
        .contiguous()
    )
    hidden_states = hidden_states.reshape(batch_frames, channel, height, width)
    return hidden_states + residual


# ----------------------------------------------------------------------------------------------- resnets, convs

def resnet_block_2d(W, name, input_tensor, temb, groups, eps, output_scale_factor=1.0):
    """ResnetBlock2D, time_embedding_norm 'default', SiLU, no up/down."""
    hidden_states = input_tensor
    hidden_states = group_norm(W, name + ".norm1", hidden_states, groups, eps)
    hidden_states = silu(hidden_states)
    hidden_states = conv2d(W, name + ".conv1", hidden_states)
    temb = silu(temb)
    temb = linear(W, name + ".time_emb_proj", temb)[:, :, None, None]
    hidden_states = hidden_states + temb
    hidden_states = group_norm(W, name + ".norm2", hidden_states, groups, eps)
    hidden_states = silu(hidden_states)
    hidden_states = dropout(hidden_states, 0.0)
    hidden_states = conv2d(W, name + ".conv2", hidden_states)
    if name + ".conv_shortcut.weight" in W:
        input_tensor = conv2d(W, name + ".conv_shortcut", input_tensor, padding=0)
    return (input_tensor + hidden_states) / output_scale_factor


def temporal_conv_layer(W, name, hidden_states, num_frames, groups):
    """TemporalConvLayer: GroupNorm (default eps 1e-5) - SiLU - [Dropout] - Conv3d (3,1,1) pad (1,0,0), x4."""
    hidden_states = hidden_states[None, :].reshape((-1, num_frames) + hidden_states.shape[1:]).permute(0, 2, 1, 3, 4)
    identity = hidden_states
    for stage, conv_index in (("conv1", 2), ("conv2", 3), ("conv3", 3), ("conv4", 3)):
        hidden_states = group_norm(W, f"{name}.{stage}.0", hidden_states, groups, 1e-5)
        hidden_states = silu(hidden_states)
        if conv_index == 3:
            hidden_states = dropout(hidden_states, 0.1)
        conv = f"{name}.{stage}.{conv_index}"
        hidden_states = F.conv3d(hidden_states, W[conv + ".weight"], W[conv + ".bias"], 1, (1, 0, 0))
    hidden_states = identity + hidden_states
    hidden_states = hidden_states.permute(0, 2, 1, 3, 4).reshape(
        (hidden_states.shape[0] * hidden_states.shape[2], -1) + hidden_states.shape[3:]
    )
    return hidden_states


def downsample_2d(W, name, hidden_states, padding):
    """Downsample2D(use_conv=True, name='op')."""
    if padding == 0:
        hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
    return conv2d(W, name + ".conv", hidden_states, stride=2, padding=padding)


def upsample_2d(W, name, hidden_states, output_size=None):
    """Upsample2D(use_conv=True): nearest x2 (or to output_size), then the 3x3 conv."""
    if hidden_states.shape[0] >= 64:
        hidden_states = hidden_states.contiguous()
    if output_size is None:
        hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
    else:
        hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
    return conv2d(W, name + ".conv", hidden_states)


# ----------------------------------------------------------------------------------------------- blocks

def block_layer(W, name, i, h, temb, ehs, nf, c):
    """Layer i of a down or up block: resnet -> temp_conv, then, in the CrossAttn kinds (ehs = the text states,
    else None), attention -> temp_attention."""
    h = resnet_block_2d(W, f"{name}.resnets.{i}", h, temb, c["groups"], c["eps"])
    h = temporal_conv_layer(W, f"{name}.temp_convs.{i}", h, nf, c["groups"])
    if ehs is not None:
        heads = h.shape[1] // c["head_dim"]
        h = transformer_2d(W, f"{name}.attentions.{i}", h, ehs, heads, c["head_dim"], c["groups"])
        h = transformer_temporal(W, f"{name}.temp_attentions.{i}", h, nf, heads, c["head_dim"], c["groups"])
    return h


def down_block(W, name, h, temb, ehs, nf, c):
    """CrossAttnDownBlock3D (ehs = the text states) or DownBlock3D (ehs None)."""
    out = ()
    for i in range(c["layers"]):
        h = block_layer(W, name, i, h, temb, ehs, nf, c)
        out += (h,)
    if c["downsample"]:
        h = downsample_2d(W, f"{name}.downsamplers.0", h, c["downsample_padding"])
        out += (h,)
    return h, out


def mid_block(W, name, h, temb, ehs, nf, c):
    h = resnet_block_2d(W, f"{name}.resnets.0", h, temb, c["groups"], c["eps"], c["scale"])
    h = temporal_conv_layer(W, f"{name}.temp_convs.0", h, nf, c["groups"])
    i = 0
    while f"{name}.attentions.{i}.norm.weight" in W:
        heads = h.shape[1] // c["head_dim"]
        h = transformer_2d(W, f"{name}.attentions.{i}", h, ehs, heads, c["head_dim"], c["groups"])
        h = transformer_temporal(W, f"{name}.temp_attentions.{i}", h, nf, heads, c["head_dim"], c["groups"])
        h = resnet_block_2d(W, f"{name}.resnets.{i + 1}", h, temb, c["groups"], c["eps"], c["scale"])
        h = temporal_conv_layer(W, f"{name}.temp_convs.{i + 1}", h, nf, c["groups"])
        i += 1
    return h


def up_block(W, name, h, res, temb, ehs, nf, upsample_size, c):
    """CrossAttnUpBlock3D (ehs = the text states) or UpBlock3D (ehs None)."""
    for i in range(c["layers"]):
        r = res[-1]
        res = res[:-1]
        h = torch.cat([h, r], dim=1)
        h = block_layer(W, name, i, h, temb, ehs, nf, c)
    if c["upsample"]:
        h = upsample_2d(W, f"{name}.upsamplers.0", h, upsample_size)
    return h


# ----------------------------------------------------------------------------------------------- the UNet

def unet3d_forward(config, W, sample, timestep, encoder_hidden_states):
    """UNet3DConditionModel.forward(sample, timestep, encoder_hidden_states) with no mask, no class labels,
    no extra residuals, cross_attention_kwargs None; returns the sample tensor (B, C_out, F, H, W)."""
    if config.get("num_attention_heads") is not None or config.get("time_cond_proj_dim") is not None:
        raise SystemExit("num_attention_heads / time_cond_proj_dim are not supported (nor by Diffusers 0.30.3)")
    channels = as_list(config["block_out_channels"])
    n_blocks = len(channels)
    down_types = as_list(config["down_block_types"])
    up_types = as_list(config["up_block_types"])
    head_dims = as_list(config["attention_head_dim"])
    if len(head_dims) == 1:
        head_dims = head_dims * n_blocks
    groups, eps = config["norm_num_groups"], config["norm_eps"]
    layers = config["layers_per_block"]

    num_upsamplers = n_blocks - 1
    default_overall_up_factor = 2 ** num_upsamplers
    forward_upsample_size = any(s % default_overall_up_factor != 0 for s in sample.shape[-2:])
    upsample_size = None

    # 1. time
    timesteps = timestep
    if not torch.is_tensor(timesteps):
        dtype = torch.float64 if isinstance(timestep, float) else torch.int64
        timesteps = torch.tensor([timesteps], dtype=dtype)
    elif len(timesteps.shape) == 0:
        timesteps = timesteps[None]
    num_frames = sample.shape[2]
    timesteps = timesteps.expand(sample.shape[0])
    t_emb = get_timestep_embedding(timesteps, channels[0], True, 0)
    t_emb = t_emb.to(dtype=torch.float32)
    emb = timestep_embedding(W, "time_embedding", t_emb)
    emb = emb.repeat_interleave(repeats=num_frames, dim=0)
    encoder_hidden_states = encoder_hidden_states.repeat_interleave(repeats=num_frames, dim=0)

    # 2. pre-process
    sample = sample.permute(0, 2, 1, 3, 4).reshape((sample.shape[0] * num_frames, -1) + sample.shape[3:])
    sample = conv2d(W, "conv_in", sample)
    # transformer_in: TransformerTemporalModel(num_attention_heads=8, attention_head_dim=attention_head_dim)
    sample = transformer_temporal(W, "transformer_in", sample, num_frames, 8, head_dims[0], groups)

    # 3. down
    down_block_res_samples = (sample,)
    for i, kind in enumerate(down_types):
        c = dict(layers=layers, groups=groups, eps=eps, head_dim=head_dims[i], downsample=i < n_blocks - 1,
                 downsample_padding=config.get("downsample_padding", 1))
        name = f"down_blocks.{i}"
        if kind not in ("CrossAttnDownBlock3D", "DownBlock3D"):
            raise SystemExit(f"unsupported down block {kind}")
        block_ehs = encoder_hidden_states if kind == "CrossAttnDownBlock3D" else None
        sample, res = down_block(W, name, sample, emb, block_ehs, num_frames, c)
        down_block_res_samples += res

    # 4. mid
    c = dict(groups=groups, eps=eps, head_dim=head_dims[-1], scale=config.get("mid_block_scale_factor", 1))
    sample = mid_block(W, "mid_block", sample, emb, encoder_hidden_states, num_frames, c)

    # 5. up
    up_head_dims = list(reversed(head_dims))
    for i, kind in enumerate(up_types):
        is_final_block = i == len(up_types) - 1
        n = layers + 1
        res_samples = down_block_res_samples[-n:]
        down_block_res_samples = down_block_res_samples[:-n]
        if not is_final_block and forward_upsample_size:
            upsample_size = down_block_res_samples[-1].shape[2:]
        c = dict(layers=n, groups=groups, eps=eps, head_dim=up_head_dims[i], upsample=not is_final_block)
        name = f"up_blocks.{i}"
        if kind not in ("CrossAttnUpBlock3D", "UpBlock3D"):
            raise SystemExit(f"unsupported up block {kind}")
        block_ehs = encoder_hidden_states if kind == "CrossAttnUpBlock3D" else None
        sample = up_block(W, name, sample, res_samples, emb, block_ehs, num_frames, upsample_size, c)

    # 6. post-process
    sample = group_norm(W, "conv_norm_out", sample, groups, eps)
    sample = silu(sample)
    sample = conv2d(W, "conv_out", sample)
    sample = sample[None, :].reshape((-1, num_frames) + sample.shape[1:]).permute(0, 2, 1, 3, 4)
    return sample


# ----------------------------------------------------------------------------------------------- command line

def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def loaded_blas():
    """The BLAS shared library mapped into this process (netlib reference BLAS is .../blas/libblas.so.3)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return "unknown"
    paths = sorted(os.path.realpath(p) for p in paths if p.startswith("/"))
    cores = []
    for p in paths:  # an OpenBLAS says which kernels it chose (OPENBLAS_CORETYPE, or its own detection)
        try:
            import ctypes
            corename = ctypes.CDLL(p).openblas_get_corename
            corename.restype = ctypes.c_char_p
            cores.append(corename().decode())
        except (OSError, AttributeError):
            pass
    return ",".join(paths) + (f" ({cores[0]} kernels)" if cores else "") if paths else "none found"


def parse_timestep(text):
    try:
        return torch.tensor(int(text), dtype=torch.int64)         # the pipeline passes scheduler timesteps (int64)
    except ValueError:
        return torch.tensor(float(text), dtype=torch.float64)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--shape", help="B,C,F,H,W of the random sample")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--repeat", type=int, default=1, help="timed forwards (one untimed warm-up first when > 1)")
    p.add_argument("--timestep", default="981")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", nargs=4, metavar=("SAMPLE", "T", "CONTEXT", "REF"))
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--save", help="write the --check output (float32 .npy)")
    p.add_argument("--zero-scores", action="store_true", help="baddbmm from torch.zeros (see the docstring)")
    a = p.parse_args(argv)
    if a.check is None and a.shape is None:
        p.error("give --shape B,C,F,H,W or --check SAMPLE T CONTEXT REF")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    Opts.zero_scores = a.zero_scores

    t0 = time.perf_counter()
    config, W = load_t2v(a.model)
    load_s = time.perf_counter() - t0

    if a.check is not None:
        sample = torch.from_numpy(np.load(a.check[0]).astype(np.float32))
        context = torch.from_numpy(np.load(a.check[2]).astype(np.float32))
        timestep = parse_timestep(a.check[1])
    else:
        shape = tuple(int(v) for v in a.shape.split(","))
        if len(shape) != 5:
            p.error("--shape needs 5 numbers")
        g = torch.Generator().manual_seed(a.seed)
        sample = torch.randn(shape, generator=g, dtype=torch.float32)
        context = torch.randn((shape[0], 77, config["cross_attention_dim"]), generator=g, dtype=torch.float32)
        timestep = parse_timestep(a.timestep)

    times = []
    cpu = []
    warm = None
    with torch.no_grad():
        if a.check is None and a.repeat > 1:
            t0 = time.perf_counter()
            unet3d_forward(config, W, sample, timestep, context)
            warm = time.perf_counter() - t0
        for _ in range(max(1, a.repeat) if a.check is None else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            out = unet3d_forward(config, W, sample, timestep, context)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)

    threads = torch.get_num_threads()
    blas = loaded_blas()
    shape_text = ",".join(str(v) for v in sample.shape)
    if a.check is not None:
        ref = np.load(a.check[3]).astype(np.float64)
        got = out.numpy().astype(np.float64)
        if got.shape != ref.shape:
            print(f"torch_unet: shape {got.shape} != reference {ref.shape}")
            return 1
        finite = bool(np.isfinite(got).all())
        err = float(np.abs(got - ref).max() / np.abs(ref).max()) if finite else float("inf")
        if a.save:
            np.save(a.save, out.numpy())
        print(f"torch_unet: check max|diff|/max|ref| {err:.3e} (tol {a.tol:g}){'' if finite else ', NON-FINITE output'}, "
              f"forward {times[0]:.3f} s, threads {threads}, shape {shape_text}, blas {blas}")
        return 0 if err <= a.tol else 1

    runs = " ".join(f"{t:.2f}" for t in times)
    detail = f"min of {len(times)}" + (f": {runs}; warm-up {warm:.2f}" if warm is not None else "")
    busy = " ".join(f"{c / t:.2f}" for c, t in zip(cpu, times))
    shared = any(c / t < 0.8 * threads for c, t in zip(cpu, times))
    print(f"torch_unet: load {load_s:.2f} s, out max|x| {out.abs().max().item():.4g}"
          f"{'' if torch.isfinite(out).all() else ' NON-FINITE'}, process cpu/wall per timed run {busy}"
          f"{' (below 0.8 x threads: CPU contention or BLAS/OpenMP not using all threads)' if shared else ''}")
    print(f"torch_unet: forward {min(times):.2f} s ({detail}), peak RSS {peak_rss_mib():.0f} MiB, "
          f"threads {threads}, shape {shape_text}, blas {blas}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
