#!/usr/bin/env python3
"""Independent float64 numpy model of Diffusers 0.30.3's UNet3DConditionModel (ModelScope text-to-video).

It is a second implementation, written from the Diffusers source and the facts in shared/golden/README.md,
that the tests use to check t2v.c at sizes the golden fixture does not cover (odd latent H/W, one frame,
1x1 latents, batch 1 or 2). numpy only; every function below models one Diffusers module and is named after it.

    config, weights = load_unet(folder)               # folder holds config.json + diffusion_pytorch_model.safetensors
    out = unet3d_forward(config, weights, sample, timestep, encoder_hidden_states)
        sample (B, C, F, H, W), encoder_hidden_states (B, L, D), timestep a number or B numbers
        -> noise prediction (B, C_out, F, H, W), float64
    unet3d_forward(..., trace=fn) calls fn(name, array) with intermediates named like the fixture's act_*.npy
    (conv_in, transformer_in, down_block0_resnets0, down_block1, mid_block, up_block2, conv_norm_out, ...).

Command line:
    reference_unet.py                        validate against shared/golden/tiny/unet (out.npy and act_*.npy)
    reference_unet.py SAMPLE.npy T CONTEXT.npy OUT.npy [--model DIR]   write the noise prediction (float64)

Layout inside the network follows Diffusers: every 4-D activation is (B*F, C, H, W) with row b*F + f.

Numerics: everything is float64 except the sinusoidal timestep projection, whose angle t*freq is rounded to
float32 before cos/sin as torch computes it (the angle reaches ~1000 rad, so that rounding is part of what
the model outputs: float64 angles move act_time_proj by ~4e-6).
"""
import json
import math
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.environ.get("T2V_GOLDEN", os.path.join(HERE, "..", "..", "shared", "golden"))


# ----------------------------------------------------------------------------------------------- loading

def read_safetensors(path):
    """name -> float64 array. Header: u64 little-endian length, then JSON {name: {dtype, shape, data_offsets}};
    offsets are relative to the byte after the header. Float tensors only (F32, F16, F64); others are skipped."""
    kinds = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in kinds:
            continue
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(blob, dtype=kinds[info["dtype"]], count=(hi - lo) // np.dtype(kinds[info["dtype"]]).itemsize,
                            offset=base + lo)
        tensors[name] = arr.reshape(info["shape"]).astype(np.float64)
    return tensors


def load_unet(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    weights = read_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    return config, weights


# ----------------------------------------------------------------------------------------------- basic layers

def linear(W, name, x):
    """torch.nn.Linear over the last axis; the bias is optional (attention q/k/v have none)."""
    y = x @ W[name + ".weight"].T
    bias = W.get(name + ".bias")
    return y if bias is None else y + bias


def conv2d(W, name, x, stride=1, padding=1):
    """torch.nn.Conv2d on (N, C, H, W), zero padding, by gathering the kernel taps (im2col) and one matmul."""
    w = W[name + ".weight"]
    cout, cin, kh, kw = w.shape
    n, c, h, wd = x.shape
    assert c == cin, (name, x.shape, w.shape)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    cols = np.empty((n, ho, wo, cin, kh, kw))
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            cols[..., i, j] = tap.transpose(0, 2, 3, 1)
    y = cols.reshape(n * ho * wo, cin * kh * kw) @ w.reshape(cout, -1).T + W[name + ".bias"]
    return y.reshape(n, ho, wo, cout).transpose(0, 3, 1, 2)


def conv3d_temporal(W, name, x):
    """torch.nn.Conv3d with kernel (3, 1, 1), padding (1, 0, 0) on (B, C, F, H, W): a 3-tap conv over frames."""
    w = W[name + ".weight"]                      # (Cout, Cin, 3, 1, 1)
    k = w.shape[2]
    pad = (k - 1) // 2
    frames = x.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (0, 0), (0, 0)))
    y = 0.0
    for t in range(k):
        y = y + np.einsum("oc,bcfhw->bofhw", w[:, :, t, 0, 0], xp[:, :, t:t + frames], optimize=True)
    return y + W[name + ".bias"][None, :, None, None, None]


def group_norm(W, name, x, groups, eps):
    """torch.nn.GroupNorm on (N, C, ...): statistics per sample and group over C/G channels and all other axes
    (biased variance), then a per-channel affine."""
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y * W[name + ".weight"].reshape(shape) + W[name + ".bias"].reshape(shape)


def layer_norm(W, name, x, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * W[name + ".weight"] + W[name + ".bias"]


def silu(x):
    return x / (1.0 + np.exp(-x))


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    """exact (erf) GELU, torch's default approximate='none'."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------- embeddings

def timesteps(t, dim):
    """Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0): [cos(t f_i) | sin(t f_i)],
    f_i = exp(-ln(10000) i / (dim/2)). The exponent, the frequencies and the angle are float32 values in torch
    (timesteps .float()); they are rounded here the same way, then cos/sin are taken in float64."""
    f32 = np.float32
    half = dim // 2
    exponent = (f32(-math.log(10000.0)) * np.arange(half, dtype=f32)) / f32(half)
    freq = np.exp(exponent.astype(np.float64)).astype(f32)
    angle = (np.asarray(t, dtype=np.float64).astype(f32)[:, None] * freq[None, :]).astype(np.float64)
    emb = np.concatenate([np.cos(angle), np.sin(angle)], axis=1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb


def timestep_embedding(W, name, x):
    """TimestepEmbedding: linear_1 -> SiLU -> linear_2."""
    return linear(W, name + ".linear_2", silu(linear(W, name + ".linear_1", x)))


# ----------------------------------------------------------------------------------------------- attention

def attention(W, name, x, context, heads):
    """Attention with AttnProcessor: q from x, k/v from context (x itself for self-attention), heads split as
    contiguous slices of the inner dim, scores scaled by head_dim^-0.5, softmax, then to_out.0 (Linear)."""
    q = linear(W, name + ".to_q", x)
    k = linear(W, name + ".to_k", context)
    v = linear(W, name + ".to_v", context)
    b, s, inner = q.shape
    d = inner // heads

    def split(m):
        return m.reshape(m.shape[0], m.shape[1], heads, d).transpose(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    probs = softmax((q @ k.transpose(0, 1, 3, 2)) * d ** -0.5)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, inner)
    return linear(W, name + ".to_out.0", out)


def geglu(W, name, x):
    """GEGLU: one Linear to twice the width, first half (value) times gelu(second half) (gate)."""
    value, gate = np.split(linear(W, name + ".proj", x), 2, axis=-1)
    return value * gelu(gate)


def feed_forward(W, name, x):
    """FeedForward(activation 'geglu'): net.0 = GEGLU, net.1 dropout, net.2 Linear."""
    return linear(W, name + ".net.2", geglu(W, name + ".net.0", x))


def basic_transformer_block(W, name, x, heads, context=None):
    """BasicTransformerBlock, norm_type 'layer_norm': x += attn1(norm1 x) (self); x += attn2(norm2 x, context)
    (context None: the temporal blocks' second self-attention, double_self_attention); x += ff(norm3 x)."""
    h = layer_norm(W, name + ".norm1", x)
    x = x + attention(W, name + ".attn1", h, h, heads)
    h = layer_norm(W, name + ".norm2", x)
    x = x + attention(W, name + ".attn2", h, h if context is None else context, heads)
    h = layer_norm(W, name + ".norm3", x)
    return x + feed_forward(W, name + ".ff", h)


def _num_layers(W, prefix):
    n = 0
    while f"{prefix}.{n}.norm1.weight" in W:
        n += 1
    return n


def transformer_2d_model(W, name, x, context, heads, groups):
    """Transformer2DModel, continuous input, use_linear_projection=True: GroupNorm (eps 1e-6, per frame) ->
    tokens (N, H*W, C) -> proj_in -> blocks with cross-attention to context -> proj_out -> + residual."""
    n, c, h, w = x.shape
    t = group_norm(W, name + ".norm", x, groups, 1e-6)
    t = t.transpose(0, 2, 3, 1).reshape(n, h * w, c)
    t = linear(W, name + ".proj_in", t)
    for i in range(_num_layers(W, name + ".transformer_blocks")):
        t = basic_transformer_block(W, f"{name}.transformer_blocks.{i}", t, heads, context)
    t = linear(W, name + ".proj_out", t)
    return t.reshape(n, h, w, c).transpose(0, 3, 1, 2) + x


def transformer_temporal_model(W, name, x, num_frames, heads, groups):
    """TransformerTemporalModel: GroupNorm (eps 1e-6) of the 5-D (B, C, F, H, W) tensor (statistics over all
    frames), one sequence of F tokens per (b, h, w), proj_in -> self-attention-only blocks -> proj_out,
    back to (B*F, C, H, W) and + residual. No positional embedding."""
    bf, c, h, w = x.shape
    b = bf // num_frames
    v = x.reshape(b, num_frames, c, h, w).transpose(0, 2, 1, 3, 4)
    v = group_norm(W, name + ".norm", v, groups, 1e-6)
    t = v.transpose(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
    t = linear(W, name + ".proj_in", t)
    for i in range(_num_layers(W, name + ".transformer_blocks")):
        t = basic_transformer_block(W, f"{name}.transformer_blocks.{i}", t, heads, None)
    t = linear(W, name + ".proj_out", t)
    t = t.reshape(b, h, w, num_frames, c).transpose(0, 3, 4, 1, 2).reshape(bf, c, h, w)
    return t + x


# ----------------------------------------------------------------------------------------------- resnets, convs

def resnet_block_2d(W, name, x, temb, groups, eps, output_scale_factor=1.0):
    """ResnetBlock2D (time_embedding_norm 'default', pre-norm, SiLU): norm1-SiLU-conv1, + time_emb_proj(SiLU temb),
    norm2-SiLU-conv2, 1x1 conv_shortcut when channels change, (shortcut + h) / output_scale_factor."""
    h = conv2d(W, name + ".conv1", silu(group_norm(W, name + ".norm1", x, groups, eps)))
    h = h + linear(W, name + ".time_emb_proj", silu(temb))[:, :, None, None]
    h = conv2d(W, name + ".conv2", silu(group_norm(W, name + ".norm2", h, groups, eps)))
    shortcut = conv2d(W, name + ".conv_shortcut", x, padding=0) if name + ".conv_shortcut.weight" in W else x
    return (shortcut + h) / output_scale_factor


def temporal_conv_layer(W, name, x, num_frames, groups):
    """TemporalConvLayer: on (B, C, F, H, W), four [GroupNorm (torch default eps 1e-5, stats over all frames)
    -> SiLU -> Conv3d (3,1,1)] stages (Sequential indices conv1.0/.2, convN.0/.3), plus the identity."""
    bf, c, h, w = x.shape
    b = bf // num_frames
    v = x.reshape(b, num_frames, c, h, w).transpose(0, 2, 1, 3, 4)
    y = v
    for stage, conv_index in (("conv1", 2), ("conv2", 3), ("conv3", 3), ("conv4", 3)):
        y = group_norm(W, f"{name}.{stage}.0", y, groups, 1e-5)
        y = conv3d_temporal(W, f"{name}.{stage}.{conv_index}", silu(y))
    y = v + y
    return y.transpose(0, 2, 1, 3, 4).reshape(bf, y.shape[1], h, w)


def downsample_2d(W, name, x, padding):
    """Downsample2D(use_conv=True): 3x3 stride-2 conv; padding 0 means an explicit (0,1,0,1) zero pad first."""
    if padding == 0:
        x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))
    return conv2d(W, name + ".conv", x, stride=2, padding=padding)


def nearest_source_index(out_size, in_size):
    """torch's upsample_nearest source index for an explicit output size: min(floor(dst * scale), in - 1) with
    scale = (float)in / out and the product evaluated in float32 (UpSample.h nearest_idx)."""
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(dst.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def upsample_2d(W, name, x, output_size=None):
    """Upsample2D(use_conv=True): nearest interpolation (x2, or to output_size = the skip tensor's H, W when
    the UNet forwards it), then a 3x3 conv, padding 1."""
    h, w = x.shape[2:]
    oh, ow = (2 * h, 2 * w) if output_size is None else output_size
    x = x[:, :, nearest_source_index(oh, h)][:, :, :, nearest_source_index(ow, w)]
    return conv2d(W, name + ".conv", x)


# ----------------------------------------------------------------------------------------------- blocks

def _tap(trace, name, x):
    if trace is not None:
        trace(name, x)


def down_block_3d(W, name, x, temb, context, num_frames, c, tag, trace):
    """CrossAttnDownBlock3D (context = the text states) or DownBlock3D (context None): per layer resnet ->
    temp_conv [-> attention -> temp_attention], each layer's output kept as a skip; then the downsampler (if any),
    whose output is a skip too."""
    skips = []
    for i in range(c["layers"]):
        x = resnet_block_2d(W, f"{name}.resnets.{i}", x, temb, c["groups"], c["eps"])
        _tap(trace, f"{tag}_resnets{i}", x)
        x = temporal_conv_layer(W, f"{name}.temp_convs.{i}", x, num_frames, c["groups"])
        _tap(trace, f"{tag}_temp_convs{i}", x)
        if context is not None:
            heads = x.shape[1] // c["head_dim"]
            x = transformer_2d_model(W, f"{name}.attentions.{i}", x, context, heads, c["groups"])
            _tap(trace, f"{tag}_attentions{i}", x)
            x = transformer_temporal_model(W, f"{name}.temp_attentions.{i}", x, num_frames, heads, c["groups"])
            _tap(trace, f"{tag}_temp_attentions{i}", x)
        skips.append(x)
    if c["downsample"]:
        x = downsample_2d(W, f"{name}.downsamplers.0", x, c["downsample_padding"])
        skips.append(x)
    return x, skips


def unet_mid_block_3d_cross_attn(W, name, x, temb, context, num_frames, c, tag, trace):
    """UNetMidBlock3DCrossAttn (num_layers 1): resnet0 -> temp_conv0, then per layer attention ->
    temp_attention -> resnet -> temp_conv; resnets use mid_block_scale_factor as output_scale_factor."""
    x = resnet_block_2d(W, f"{name}.resnets.0", x, temb, c["groups"], c["eps"], c["scale"])
    x = temporal_conv_layer(W, f"{name}.temp_convs.0", x, num_frames, c["groups"])
    heads = x.shape[1] // c["head_dim"]
    i = 0
    while f"{name}.attentions.{i}.norm.weight" in W:
        x = transformer_2d_model(W, f"{name}.attentions.{i}", x, context, heads, c["groups"])
        x = transformer_temporal_model(W, f"{name}.temp_attentions.{i}", x, num_frames, heads, c["groups"])
        x = resnet_block_2d(W, f"{name}.resnets.{i + 1}", x, temb, c["groups"], c["eps"], c["scale"])
        x = temporal_conv_layer(W, f"{name}.temp_convs.{i + 1}", x, num_frames, c["groups"])
        i += 1
    return x


def up_block_3d(W, name, x, skips, temb, context, num_frames, upsample_size, c):
    """CrossAttnUpBlock3D (context = the text states) or UpBlock3D (context None): per layer concat(x, last skip)
    on channels -> resnet -> temp_conv [-> attention -> temp_attention]; then the upsampler (if any) with the
    forwarded output size."""
    skips = list(skips)
    for i in range(c["layers"]):
        x = np.concatenate([x, skips.pop()], axis=1)
        x = resnet_block_2d(W, f"{name}.resnets.{i}", x, temb, c["groups"], c["eps"])
        x = temporal_conv_layer(W, f"{name}.temp_convs.{i}", x, num_frames, c["groups"])
        if context is not None:
            heads = x.shape[1] // c["head_dim"]
            x = transformer_2d_model(W, f"{name}.attentions.{i}", x, context, heads, c["groups"])
            x = transformer_temporal_model(W, f"{name}.temp_attentions.{i}", x, num_frames, heads, c["groups"])
    if c["upsample"]:
        x = upsample_2d(W, f"{name}.upsamplers.0", x, upsample_size)
    return x


# ----------------------------------------------------------------------------------------------- the UNet

def _per_block(value, n):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def unet3d_forward(config, weights, sample, timestep, encoder_hidden_states, trace=None):
    """UNet3DConditionModel.forward (no attention mask, no extra residuals, no class labels)."""
    W = weights
    if config.get("num_attention_heads") is not None or config.get("time_cond_proj_dim") is not None:
        raise NotImplementedError("num_attention_heads / time_cond_proj_dim are not supported (nor by Diffusers 0.30.3)")
    if config.get("act_fn", "silu") != "silu":
        raise NotImplementedError("act_fn must be silu")
    sample = np.asarray(sample, dtype=np.float64)
    context = np.asarray(encoder_hidden_states, dtype=np.float64)
    batch, _, num_frames, height, width = sample.shape
    channels = list(config["block_out_channels"])
    n_blocks = len(channels)
    down_types, up_types = config["down_block_types"], config["up_block_types"]
    # attention_head_dim (Diffusers' misnomer for the per-block head count input) is the per-head width in blocks
    head_dims = _per_block(config["attention_head_dim"], n_blocks)
    groups, eps = config["norm_num_groups"], config["norm_eps"]
    layers = config["layers_per_block"]

    # every block but the last upsamples; if H or W is not a multiple of 2^that, the skip sizes are forwarded
    up_factor = 2 ** (n_blocks - 1)
    forward_upsample_size = height % up_factor != 0 or width % up_factor != 0

    # 1. time: one embedding per batch row, repeated for each of its frames (as is the text context)
    t = np.broadcast_to(np.asarray(timestep, dtype=np.float64).reshape(-1), (batch,))
    t_emb = timesteps(t, channels[0])
    _tap(trace, "time_proj", t_emb)
    emb = timestep_embedding(W, "time_embedding", t_emb)
    _tap(trace, "time_embedding", emb)
    emb = np.repeat(emb, num_frames, axis=0)
    context = np.repeat(context, num_frames, axis=0)

    # 2. (B, C, F, H, W) -> (B*F, C, H, W), conv_in, transformer_in (8 heads of attention_head_dim)
    x = sample.transpose(0, 2, 1, 3, 4).reshape(batch * num_frames, -1, height, width)
    x = conv2d(W, "conv_in", x)
    _tap(trace, "conv_in", x)
    x = transformer_temporal_model(W, "transformer_in", x, num_frames, 8, groups)
    _tap(trace, "transformer_in", x)

    # 3. down
    skips = [x]
    for i, kind in enumerate(down_types):
        c = dict(layers=layers, groups=groups, eps=eps, head_dim=head_dims[i], downsample=i < n_blocks - 1,
                 downsample_padding=config.get("downsample_padding", 1))
        name, tag = f"down_blocks.{i}", f"down_block{i}"
        if kind not in ("CrossAttnDownBlock3D", "DownBlock3D"):
            raise NotImplementedError(kind)
        block_context = context if kind == "CrossAttnDownBlock3D" else None
        x, res = down_block_3d(W, name, x, emb, block_context, num_frames, c, tag, trace)
        skips += res
        _tap(trace, tag, x)

    # 4. mid
    c = dict(groups=groups, eps=eps, head_dim=head_dims[-1], scale=config.get("mid_block_scale_factor", 1))
    x = unet_mid_block_3d_cross_attn(W, "mid_block", x, emb, context, num_frames, c, "mid_block", trace)
    _tap(trace, "mid_block", x)

    # 5. up: each block takes layers+1 skips from the end; the next skip's size is the upsampling target
    up_head_dims = list(reversed(head_dims))
    for i, kind in enumerate(up_types):
        n = layers + 1
        res, skips = skips[-n:], skips[:-n]
        is_final = i == len(up_types) - 1
        upsample_size = tuple(skips[-1].shape[2:]) if (not is_final and forward_upsample_size) else None
        c = dict(layers=n, groups=groups, eps=eps, head_dim=up_head_dims[i], upsample=not is_final)
        name, tag = f"up_blocks.{i}", f"up_block{i}"
        if kind not in ("CrossAttnUpBlock3D", "UpBlock3D"):
            raise NotImplementedError(kind)
        block_context = context if kind == "CrossAttnUpBlock3D" else None
        x = up_block_3d(W, name, x, res, emb, block_context, num_frames, upsample_size, c)
        _tap(trace, tag, x)

    # 6. out
    if config.get("norm_num_groups") is not None:
        x = group_norm(W, "conv_norm_out", x, groups, eps)
        _tap(trace, "conv_norm_out", x)
        x = silu(x)
    x = conv2d(W, "conv_out", x)
    _tap(trace, "conv_out", x)
    return x.reshape(batch, num_frames, *x.shape[1:]).transpose(0, 2, 1, 3, 4)


# ----------------------------------------------------------------------------------------------- command line

def rel_err(got, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(got, dtype=np.float64) - ref).max() / np.abs(ref).max())


def validate(tiny=os.path.join(GOLDEN, "tiny")):
    config, weights = load_unet(os.path.join(tiny, "model", "unet"))
    d = os.path.join(tiny, "unet")
    sample = np.load(os.path.join(d, "sample.npy"))
    context = np.load(os.path.join(d, "encoder_hidden_states.npy"))
    acts = {}
    start = time.time()
    out = unet3d_forward(config, weights, sample, 501, context, trace=lambda k, v: acts.__setitem__(k, v))
    seconds = time.time() - start
    worst = 0.0
    for k in sorted(acts):
        path = os.path.join(d, f"act_{k}.npy")
        if os.path.exists(path):
            e = rel_err(acts[k], np.load(path))
            worst = max(worst, e)
            print(f"  act_{k:34s} max|d|/max|ref| {e:.2e}")
    e = rel_err(out, np.load(os.path.join(d, "out.npy")))
    print(f"out {tuple(out.shape)}: max|d|/max|ref| {e:.2e} (bound 1e-5), worst activation {worst:.2e}, {seconds:.2f} s")
    return e <= 1e-5


def main(argv):
    if not argv:
        return 0 if validate() else 1
    model = os.path.join(GOLDEN, "tiny", "model", "unet")
    if "--model" in argv:
        k = argv.index("--model")
        model = argv[k + 1]
        argv = argv[:k] + argv[k + 2:]
    if len(argv) != 4:
        print(__doc__)
        return 2
    config, weights = load_unet(model)
    out = unet3d_forward(config, weights, np.load(argv[0]), float(argv[1]), np.load(argv[2]))
    np.save(argv[3], out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
