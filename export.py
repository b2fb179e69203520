#!/usr/bin/env python3
"""export.py: turn a Diffusers TextToVideoSDPipeline or StableDiffusionPipeline (SD 1.x) folder into one t2v
model file.

    python3 export.py SRC OUT.t2v [--variant fp16] [--dtype f32|f16|int8]
    python3 export.py --random ms-1.7b|sd-1.5|tiny OUT.t2v [--seed 0] [--dtype f32|f16|int8]

SRC is a folder laid out like a Hugging Face snapshot of damo-vilab/text-to-video-ms-1.7b or of an SD 1.x
checkpoint such as runwayml/stable-diffusion-v1-5 (model_index.json; text_encoder/, tokenizer/, unet/, vae/,
scheduler/; an SD snapshot's safety_checker/ and feature_extractor/ are not exported) or, where huggingface_hub
is importable, a hub id that is downloaded first. The file layout is documented in weights/README.md.
Only numpy is required; torch is used only to read legacy .bin checkpoints.
"""
import argparse
import json
import os
import struct
import sys
import unicodedata

import numpy as np

MAGIC = b"T2VMODEL"
VERSION = 1
ALIGN = 64
# dtype codes of the tensor table (weights/README.md); int8 entries carry per-group float32 scales
DTYPE_F32, DTYPE_I8, DTYPE_I32, DTYPE_U8, DTYPE_F16 = 0, 1, 2, 3, 4


class ExportError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The full-size configs of damo-vilab/text-to-video-ms-1.7b, as data (used by --random)

MS_1_7B = {
    "model_index": {"_class_name": "TextToVideoSDPipeline",
                    "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
                    "vae": ["diffusers", "AutoencoderKL"]},
    "scheduler": {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
                  "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True,
                  "steps_offset": 1, "trained_betas": None},
    "text_encoder": {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
                     "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1024,
                     "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
                     "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
                     "num_attention_heads": 16, "num_hidden_layers": 23, "pad_token_id": 1,
                     "projection_dim": 512, "torch_dtype": "float32", "vocab_size": 49408},
    "tokenizer": {"add_prefix_space": False, "do_lower_case": True, "errors": "replace",
                  "model_max_length": 77, "pad_token": "!", "tokenizer_class": "CLIPTokenizer",
                  "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
    "unet": {"_class_name": "UNet3DConditionModel", "act_fn": "silu", "attention_head_dim": 64,
             "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
             "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                                  "DownBlock3D"],
             "downsample_padding": 1, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
             "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 32,
             "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"]},
    "vae": {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
            "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
            "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 4},
}
# A small model of the same family (the shape of the golden test fixture): seconds instead of hours, for
# trying the build and the command line without downloading anything.
TINY = {
    "model_index": MS_1_7B["model_index"],
    "scheduler": MS_1_7B["scheduler"],
    "text_encoder": dict(MS_1_7B["text_encoder"], hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=3, projection_dim=32),
    "tokenizer": MS_1_7B["tokenizer"],
    "unet": dict(MS_1_7B["unet"], attention_head_dim=8, block_out_channels=[32, 64, 64], cross_attention_dim=32,
                 down_block_types=["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"], norm_num_groups=8,
                 sample_size=8, up_block_types=["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"]),
    "vae": dict(MS_1_7B["vae"], block_out_channels=[16, 32, 32, 32], norm_num_groups=8, sample_size=64),
}
# The full-size configs of runwayml/stable-diffusion-v1-5 (Text2Video-Zero's model in the Diffusers docs)
SD_1_5 = {
    "model_index": {"_class_name": "StableDiffusionPipeline",
                    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                    "vae": ["diffusers", "AutoencoderKL"]},
    "scheduler": {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
                  "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None},
    "text_encoder": dict(MS_1_7B["text_encoder"], hidden_act="quick_gelu", hidden_size=768, intermediate_size=3072,
                         num_attention_heads=12, num_hidden_layers=12, projection_dim=768),
    "tokenizer": dict(MS_1_7B["tokenizer"], pad_token="<|endoftext|>"),
    "unet": {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
             "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
             "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"],
             "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
             "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
             "out_channels": 4, "sample_size": 64,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]},
    "vae": MS_1_7B["vae"],
}
RANDOM_CONFIGS = {"ms-1.7b": MS_1_7B, "tiny": TINY, "sd-1.5": SD_1_5}


# ---------------------------------------------------------------------------------------------
# Config defaults and checks: what t2v implements, refused by name otherwise

UNET_DEFAULTS = {"in_channels": 4, "out_channels": 4, "layers_per_block": 2, "downsample_padding": 1,
                 "mid_block_scale_factor": 1.0, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
                 "cross_attention_dim": 1024, "attention_head_dim": 64, "num_attention_heads": None,
                 "time_cond_proj_dim": None, "sample_size": None,
                 "block_out_channels": [320, 640, 1280, 1280],
                 "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
                 "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3}
# UNet2DConditionModel.__init__'s defaults, for the keys t2v reads
UNET2D_DEFAULTS = {"in_channels": 4, "out_channels": 4, "layers_per_block": 2, "downsample_padding": 1,
                   "mid_block_scale_factor": 1.0, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
                   "cross_attention_dim": 1280, "attention_head_dim": 8, "num_attention_heads": None,
                   "time_cond_proj_dim": None, "sample_size": None, "flip_sin_to_cos": True, "freq_shift": 0,
                   "use_linear_projection": False, "mid_block_type": "UNetMidBlock2DCrossAttn",
                   "center_input_sample": False, "class_embed_type": None, "addition_embed_type": None,
                   "only_cross_attention": False, "upcast_attention": False, "dual_cross_attention": False,
                   "resnet_time_scale_shift": "default", "transformer_layers_per_block": 1,
                   "time_embedding_type": "positional", "encoder_hid_dim": None, "conv_in_kernel": 3,
                   "conv_out_kernel": 3, "attention_type": "default",
                   "block_out_channels": [320, 640, 1280, 1280],
                   "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                   "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
VAE_DEFAULTS = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
                "act_fn": "silu", "norm_num_groups": 32, "block_out_channels": [64], "sample_size": 32,
                "down_block_types": ["DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D"],
                "scaling_factor": 0.18215, "shift_factor": None, "latents_mean": None, "latents_std": None,
                "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True}
TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                 "layer_norm_eps": 1e-5}


def with_defaults(config, defaults):
    merged = dict(defaults)
    merged.update({k: v for k, v in config.items() if not k.startswith("_")})
    return merged


def refuse(component, key, value, supported):
    raise ExportError(f"{component} config: {key} = {value!r} is not implemented by t2v (supported: {supported})")


def check_unet_blocks(c, kind):
    """One attention_head_dim for all blocks, and as many blocks of each kind ("2D" or "3D") as block_out_channels."""
    if not isinstance(c["attention_head_dim"], int):
        refuse("unet", "attention_head_dim", c["attention_head_dim"], "one integer for all blocks")
    n = len(c["block_out_channels"])
    if len(c["down_block_types"]) != n or len(c["up_block_types"]) != n:
        raise ExportError("unet config: block_out_channels, down_block_types and up_block_types differ in length")
    for key, names in (("down_block_types", ("CrossAttnDownBlock", "DownBlock")), ("up_block_types", ("CrossAttnUpBlock", "UpBlock"))):
        supported = [name + kind for name in names]
        for t in c[key]:
            if t not in supported:
                refuse("unet", key, t, ", ".join(repr(x) for x in supported))


def check_unet2d_config(c):
    """UNet2DConditionModel as the SD 1.x configs use it; anything else is refused by name."""
    fixed = {"num_attention_heads": None, "act_fn": "silu", "time_cond_proj_dim": None,
             "use_linear_projection": False, "mid_block_type": "UNetMidBlock2DCrossAttn",
             "center_input_sample": False, "class_embed_type": None, "addition_embed_type": None,
             "only_cross_attention": False, "upcast_attention": False, "dual_cross_attention": False,
             "resnet_time_scale_shift": "default", "transformer_layers_per_block": 1,
             "time_embedding_type": "positional", "encoder_hid_dim": None, "conv_in_kernel": 3,
             "conv_out_kernel": 3, "attention_type": "default"}
    for key, value in fixed.items():
        if c[key] != value:
            refuse("unet", key, c[key], repr(value))
    check_unet_blocks(c, "2D")
    for ch in c["block_out_channels"]:
        if ch % c["norm_num_groups"] or ch % c["attention_head_dim"]:
            raise ExportError(f"unet config: channels {ch} are not divisible by norm_num_groups "
                              f"{c['norm_num_groups']} and attention_head_dim {c['attention_head_dim']}")


def check_unet_config(c):
    if c["num_attention_heads"] is not None:
        refuse("unet", "num_attention_heads", c["num_attention_heads"], "null; Diffusers itself refuses it")
    if c["act_fn"] != "silu":
        refuse("unet", "act_fn", c["act_fn"], "'silu'")
    if c["time_cond_proj_dim"] is not None:
        refuse("unet", "time_cond_proj_dim", c["time_cond_proj_dim"], "null")
    if c["norm_num_groups"] is None:
        refuse("unet", "norm_num_groups", None, "an integer")
    check_unet_blocks(c, "3D")
    for ch in c["block_out_channels"]:
        if ch % c["norm_num_groups"]:
            raise ExportError(f"unet config: channels {ch} are not divisible by norm_num_groups {c['norm_num_groups']}")


def check_vae_config(c):
    if c["act_fn"] != "silu":
        refuse("vae", "act_fn", c["act_fn"], "'silu'")
    for key in ("shift_factor", "latents_mean", "latents_std"):
        if c[key] is not None:
            refuse("vae", key, c[key], "null")
    n = len(c["block_out_channels"])
    if len(c["down_block_types"]) != n or len(c["up_block_types"]) != n:
        raise ExportError("vae config: block_out_channels, down_block_types and up_block_types differ in length")
    for t in c["down_block_types"]:
        if t != "DownEncoderBlock2D":
            refuse("vae", "down_block_types", t, "'DownEncoderBlock2D'")
    for t in c["up_block_types"]:
        if t != "UpDecoderBlock2D":
            refuse("vae", "up_block_types", t, "'UpDecoderBlock2D'")
    if c.get("norm_type", "group") != "group":
        refuse("vae", "norm_type", c["norm_type"], "'group'")


def check_text_config(c):
    if c["hidden_act"] not in ("gelu", "quick_gelu"):
        refuse("text_encoder", "hidden_act", c["hidden_act"], "'gelu', 'quick_gelu'")
    if c["hidden_size"] % c["num_attention_heads"]:
        raise ExportError("text_encoder config: hidden_size is not divisible by num_attention_heads")
    if c.get("use_attention_mask"):
        refuse("text_encoder", "use_attention_mask", True, "false: the pipeline passes no mask")


# ---------------------------------------------------------------------------------------------
# Expected state dicts: every tensor name and shape each component's config implies.
# This mirrors the module tree of Diffusers / transformers; t2v.c looks up exactly these names.

def _linear(d, name, n_in, n_out, bias=True):
    d[name + ".weight"] = (n_out, n_in)
    if bias:
        d[name + ".bias"] = (n_out,)


def _norm(d, name, channels):
    d[name + ".weight"] = (channels,)
    d[name + ".bias"] = (channels,)


def _conv(d, name, n_in, n_out, kernel):
    d[name + ".weight"] = (n_out, n_in) + tuple(kernel)
    d[name + ".bias"] = (n_out,)


def _resnet(d, name, n_in, n_out, temb):
    _norm(d, name + ".norm1", n_in)
    _conv(d, name + ".conv1", n_in, n_out, (3, 3))
    if temb:
        _linear(d, name + ".time_emb_proj", temb, n_out)
    _norm(d, name + ".norm2", n_out)
    _conv(d, name + ".conv2", n_out, n_out, (3, 3))
    if n_in != n_out:
        _conv(d, name + ".conv_shortcut", n_in, n_out, (1, 1))


def _temporal_conv(d, name, channels):
    for i, stage in enumerate(("conv1", "conv2", "conv3", "conv4")):
        _norm(d, f"{name}.{stage}.0", channels)
        _conv(d, f"{name}.{stage}.{2 if i == 0 else 3}", channels, channels, (3, 1, 1))


def _attention(d, name, dim, kv_dim, qkv_bias=False):
    _linear(d, name + ".to_q", dim, dim, qkv_bias)
    _linear(d, name + ".to_k", kv_dim, dim, qkv_bias)
    _linear(d, name + ".to_v", kv_dim, dim, qkv_bias)
    _linear(d, name + ".to_out.0", dim, dim)


def _transformer_block(d, name, dim, cross_dim):
    _norm(d, name + ".norm1", dim)
    _attention(d, name + ".attn1", dim, dim)
    _norm(d, name + ".norm2", dim)
    _attention(d, name + ".attn2", dim, cross_dim)
    _norm(d, name + ".norm3", dim)
    _linear(d, name + ".ff.net.0.proj", dim, 8 * dim)  # GEGLU: value and gate halves of 4*dim each
    _linear(d, name + ".ff.net.2", 4 * dim, dim)


def _transformer(d, name, channels, inner, cross_dim):
    """Transformer2DModel (cross_dim = text width) or TransformerTemporalModel (cross_dim = None)."""
    _norm(d, name + ".norm", channels)
    _linear(d, name + ".proj_in", channels, inner)
    _transformer_block(d, name + ".transformer_blocks.0", inner, cross_dim if cross_dim else inner)
    _linear(d, name + ".proj_out", inner, channels)


def unet_tensors(c):
    d = {}
    ch = c["block_out_channels"]
    head_dim = c["attention_head_dim"]
    temb = 4 * ch[0]
    layers = c["layers_per_block"]
    cross = c["cross_attention_dim"]

    def inner(channels):  # heads = channels // head_dim (the attention_head_dim quirk)
        return (channels // head_dim) * head_dim

    def block_layer(block, j, n_in, n_out, cross_attention):
        """layer j of a down or up block: resnet, temporal conv, and in the CrossAttn kinds the two transformers"""
        _resnet(d, f"{block}.resnets.{j}", n_in, n_out, temb)
        _temporal_conv(d, f"{block}.temp_convs.{j}", n_out)
        if cross_attention:
            _transformer(d, f"{block}.attentions.{j}", n_out, inner(n_out), cross)
            _transformer(d, f"{block}.temp_attentions.{j}", n_out, inner(n_out), None)

    _conv(d, "conv_in", c["in_channels"], ch[0], (3, 3))
    _linear(d, "time_embedding.linear_1", ch[0], temb)
    _linear(d, "time_embedding.linear_2", temb, temb)
    _transformer(d, "transformer_in", ch[0], 8 * head_dim, None)
    out_ch = ch[0]
    for i, kind in enumerate(c["down_block_types"]):
        in_ch, out_ch = out_ch, ch[i]
        for j in range(layers):
            block_layer(f"down_blocks.{i}", j, in_ch if j == 0 else out_ch, out_ch, kind == "CrossAttnDownBlock3D")
        if i < len(ch) - 1:
            _conv(d, f"down_blocks.{i}.downsamplers.0.conv", out_ch, out_ch, (3, 3))
    mid = ch[-1]
    for j in range(2):
        _resnet(d, f"mid_block.resnets.{j}", mid, mid, temb)
        _temporal_conv(d, f"mid_block.temp_convs.{j}", mid)
    _transformer(d, "mid_block.attentions.0", mid, inner(mid), cross)
    _transformer(d, "mid_block.temp_attentions.0", mid, inner(mid), None)
    rev = list(reversed(ch))
    out_ch = rev[0]
    for i, kind in enumerate(c["up_block_types"]):
        prev_ch, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(ch) - 1)]
        for j in range(layers + 1):
            skip = in_ch if j == layers else out_ch
            n_in = (prev_ch if j == 0 else out_ch) + skip
            block_layer(f"up_blocks.{i}", j, n_in, out_ch, kind == "CrossAttnUpBlock3D")
        if i < len(ch) - 1:
            _conv(d, f"up_blocks.{i}.upsamplers.0.conv", out_ch, out_ch, (3, 3))
    _norm(d, "conv_norm_out", ch[0])
    _conv(d, "conv_out", ch[0], c["out_channels"], (3, 3))
    return d


def unet2d_tensors(c):
    """UNet2DConditionModel: the 3D UNet's tree without temporal layers or transformer_in; its Transformer2DModel
    projections are 1x1 convolutions (use_linear_projection false) and keep the width (heads = attention_head_dim
    of channels / heads each)."""
    d = {}
    ch = c["block_out_channels"]
    temb = 4 * ch[0]
    layers = c["layers_per_block"]
    cross = c["cross_attention_dim"]

    def transformer(name, channels):
        _norm(d, name + ".norm", channels)
        _conv(d, name + ".proj_in", channels, channels, (1, 1))
        _transformer_block(d, name + ".transformer_blocks.0", channels, cross)
        _conv(d, name + ".proj_out", channels, channels, (1, 1))

    _conv(d, "conv_in", c["in_channels"], ch[0], (3, 3))
    _linear(d, "time_embedding.linear_1", ch[0], temb)
    _linear(d, "time_embedding.linear_2", temb, temb)
    out_ch = ch[0]
    for i, kind in enumerate(c["down_block_types"]):
        in_ch, out_ch = out_ch, ch[i]
        for j in range(layers):
            _resnet(d, f"down_blocks.{i}.resnets.{j}", in_ch if j == 0 else out_ch, out_ch, temb)
            if kind == "CrossAttnDownBlock2D":
                transformer(f"down_blocks.{i}.attentions.{j}", out_ch)
        if i < len(ch) - 1:
            _conv(d, f"down_blocks.{i}.downsamplers.0.conv", out_ch, out_ch, (3, 3))
    mid = ch[-1]
    _resnet(d, "mid_block.resnets.0", mid, mid, temb)
    transformer("mid_block.attentions.0", mid)
    _resnet(d, "mid_block.resnets.1", mid, mid, temb)
    rev = list(reversed(ch))
    out_ch = rev[0]
    for i, kind in enumerate(c["up_block_types"]):
        prev_ch, out_ch = out_ch, rev[i]
        in_ch = rev[min(i + 1, len(ch) - 1)]
        for j in range(layers + 1):
            skip = in_ch if j == layers else out_ch
            _resnet(d, f"up_blocks.{i}.resnets.{j}", (prev_ch if j == 0 else out_ch) + skip, out_ch, temb)
            if kind == "CrossAttnUpBlock2D":
                transformer(f"up_blocks.{i}.attentions.{j}", out_ch)
        if i < len(ch) - 1:
            _conv(d, f"up_blocks.{i}.upsamplers.0.conv", out_ch, out_ch, (3, 3))
    _norm(d, "conv_norm_out", ch[0])
    _conv(d, "conv_out", ch[0], c["out_channels"], (3, 3))
    return d


def _vae_mid_block(d, name, channels, attention):
    _resnet(d, name + ".resnets.0", channels, channels, None)
    if attention:
        _norm(d, name + ".attentions.0.group_norm", channels)
        _attention(d, name + ".attentions.0", channels, channels, qkv_bias=True)
    _resnet(d, name + ".resnets.1", channels, channels, None)


def vae_tensors(c):
    d = {}
    ch = c["block_out_channels"]
    layers = c["layers_per_block"]
    lat = c["latent_channels"]
    attention = c["mid_block_add_attention"]
    _conv(d, "encoder.conv_in", c["in_channels"], ch[0], (3, 3))
    out_ch = ch[0]
    for i in range(len(ch)):
        in_ch, out_ch = out_ch, ch[i]
        for j in range(layers):
            _resnet(d, f"encoder.down_blocks.{i}.resnets.{j}", in_ch if j == 0 else out_ch, out_ch, None)
        if i < len(ch) - 1:
            _conv(d, f"encoder.down_blocks.{i}.downsamplers.0.conv", out_ch, out_ch, (3, 3))
    _vae_mid_block(d, "encoder.mid_block", ch[-1], attention)
    _norm(d, "encoder.conv_norm_out", ch[-1])
    _conv(d, "encoder.conv_out", ch[-1], 2 * lat, (3, 3))
    if c["use_quant_conv"]:
        _conv(d, "quant_conv", 2 * lat, 2 * lat, (1, 1))
    if c["use_post_quant_conv"]:
        _conv(d, "post_quant_conv", lat, lat, (1, 1))
    _conv(d, "decoder.conv_in", lat, ch[-1], (3, 3))
    _vae_mid_block(d, "decoder.mid_block", ch[-1], attention)
    rev = list(reversed(ch))
    out_ch = rev[0]
    for i in range(len(ch)):
        prev_ch, out_ch = out_ch, rev[i]
        for j in range(layers + 1):
            _resnet(d, f"decoder.up_blocks.{i}.resnets.{j}", prev_ch if j == 0 else out_ch, out_ch, None)
        if i < len(ch) - 1:
            _conv(d, f"decoder.up_blocks.{i}.upsamplers.0.conv", out_ch, out_ch, (3, 3))
    _norm(d, "decoder.conv_norm_out", ch[0])
    _conv(d, "decoder.conv_out", ch[0], c["out_channels"], (3, 3))
    return d


def text_encoder_tensors(c):
    d = {}
    dim, ff = c["hidden_size"], c["intermediate_size"]
    d["text_model.embeddings.token_embedding.weight"] = (c["vocab_size"], dim)
    d["text_model.embeddings.position_embedding.weight"] = (c["max_position_embeddings"], dim)
    for i in range(c["num_hidden_layers"]):
        p = f"text_model.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _linear(d, f"{p}.self_attn.{proj}", dim, dim)
        _norm(d, p + ".layer_norm1", dim)
        _linear(d, p + ".mlp.fc1", dim, ff)
        _linear(d, p + ".mlp.fc2", ff, dim)
        _norm(d, p + ".layer_norm2", dim)
    _norm(d, "text_model.final_layer_norm", dim)
    return d


# ---------------------------------------------------------------------------------------------
# Checkpoint readers: safetensors parsed directly (numpy only), .bin through torch

SAFETENSORS_FLOATS = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64}


def read_safetensors(path):
    """Returns {name: float32 array}; non-float tensors (position_ids buffers) are skipped."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ExportError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise ExportError(f"{path}: truncated safetensors header ({header_len} bytes announced)")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise ExportError(f"{path}: unreadable safetensors header: {e}")
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if dtype not in SAFETENSORS_FLOATS:
            if dtype in ("I64", "I32", "I16", "I8", "U8", "BOOL"):
                continue  # integer buffers such as text_model.embeddings.position_ids
            raise ExportError(f"{path}: tensor {name} has dtype {dtype}, which t2v cannot convert "
                              "(supported: F32, F16, BF16, F64)")
        if end > data.size or begin > end:
            raise ExportError(f"{path}: tensor {name} lies outside the file (truncated download?)")
        raw = data[begin:end]
        count = int(np.prod(shape)) if shape else 1
        if dtype == "BF16":
            if raw.size != 2 * count:
                raise ExportError(f"{path}: tensor {name}: {raw.size} bytes for shape {shape}")
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            np_dtype = SAFETENSORS_FLOATS[dtype]
            if raw.size != np.dtype(np_dtype).itemsize * count:
                raise ExportError(f"{path}: tensor {name}: {raw.size} bytes for shape {shape}")
            arr = raw.view(np_dtype)
        tensors[name] = arr.reshape(shape)
    return tensors


def read_torch_bin(path):
    try:
        import torch
    except ImportError:
        raise ExportError(f"{path} is a PyTorch .bin checkpoint: reading it needs torch, which is not importable "
                          "(install python3-torch, or export from a snapshot with .safetensors files)")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a corrupt file
        raise ExportError(f"{path}: torch.load failed: {e}")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    tensors = {}
    for name, value in state.items():
        if hasattr(value, "is_floating_point") and value.is_floating_point():
            tensors[name] = value.detach().float().numpy()
    return tensors


def weight_files(folder, stems, variant):
    """The checkpoint file(s) of one component, chosen as Diffusers / transformers choose them."""
    def named(stem, ext):
        return f"{stem}.{variant}.{ext}" if variant else f"{stem}.{ext}"

    for ext in ("safetensors", "bin"):
        for stem in stems:
            single = os.path.join(folder, named(stem, ext))
            if os.path.isfile(single):
                return [single]
            index = os.path.join(folder, named(stem, ext) + ".index.json")
            if os.path.isfile(index):
                with open(index) as f:
                    shards = sorted(set(json.load(f)["weight_map"].values()))
                missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
                if missing:
                    raise ExportError(f"{index}: shard {missing[0]} is missing")
                return [os.path.join(folder, s) for s in shards]
    return []


def load_weights(folder, stems, variant):
    files = weight_files(folder, stems, variant)
    if not files and variant:
        files = weight_files(folder, stems, None)
        if files:
            print(f"warning: {folder} has no '{variant}' variant weights; using {os.path.basename(files[0])}",
                  file=sys.stderr)
    if not files:
        wanted = ", ".join(f"{s}{'.' + variant if variant else ''}.safetensors" for s in stems)
        raise ExportError(f"{folder}: no weights found (looked for {wanted} and .bin)")
    tensors = {}
    for path in files:
        tensors.update(read_safetensors(path) if path.endswith(".safetensors") else read_torch_bin(path))
    return tensors


# The renamings Diffusers / transformers apply when they load older checkpoints of these components.
def rename_vae_legacy_attention(tensors):
    """Diffusers' _convert_deprecated_attention_blocks: the VAE mid-block attention of checkpoints saved by
    early Diffusers versions is named query/key/value/proj_attn; the module now says to_q/to_k/to_v/to_out.0.
    Those checkpoints may also store the projections as 1x1 convolutions (out, in, 1, 1)."""
    renames = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
    out = {}
    for name, value in tensors.items():
        parts = name.split(".")
        if ".mid_block.attentions." in name and len(parts) >= 2 and parts[-2] in renames:
            name = ".".join(parts[:-2] + [renames[parts[-2]], parts[-1]])
            if value.ndim == 4 and value.shape[2:] == (1, 1):
                value = value.reshape(value.shape[:2])
        out[name] = value
    return out


def rename_transformers_legacy(tensors):
    """transformers' loader maps LayerNorm gamma/beta to weight/bias and adds the base-model prefix."""
    out = {}
    for name, value in tensors.items():
        if name.endswith(".gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        if not name.startswith("text_model.") and not name.startswith("text_projection"):
            name = "text_model." + name
        out[name] = value
    return out


def match_tensors(component, tensors, expected):
    """Checks names and shapes against the config; returns {name: float32 array} in expected order."""
    out = {}
    for name, shape in expected.items():
        if name not in tensors:
            raise ExportError(f"{component}: tensor {name} {list(shape)} is missing from the checkpoint")
        value = tensors[name]
        if tuple(value.shape) != tuple(shape):
            raise ExportError(f"{component}: tensor {name} has shape {list(value.shape)}, "
                              f"the config implies {list(shape)}")
        out[name] = value
    extra = sorted(set(tensors) - set(expected))
    ignorable = ("text_projection.weight",)
    extra = [n for n in extra if n not in ignorable]
    if extra:
        print(f"warning: {component}: {len(extra)} tensors the config does not use are skipped "
              f"(first: {extra[0]})", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------
# Tokenizer data: vocabulary, merges, special tokens, and the Unicode / HTML tables tokenizer.c needs

def bytes_to_unicode_table():
    """CLIP's reversible byte -> printable character map."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, chars))


def special_token(value):
    if isinstance(value, dict):
        return value.get("content")
    return value


def read_tokenizer_folder(folder):
    """vocab.json, merges.txt and the special-token settings of a CLIPTokenizer folder."""
    vocab = read_json(os.path.join(folder, "vocab.json"))
    path = os.path.join(folder, "merges.txt")
    if not os.path.isfile(path):
        raise ExportError(f"missing file {path}")
    with open(path, encoding="utf-8") as f:
        merge_lines = f.read().strip().split("\n")
    config = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if os.path.isfile(os.path.join(folder, name)):
            config.update(read_json(os.path.join(folder, name)))
    return vocab, merge_lines, config


def tokenizer_blobs(vocab, merge_lines, config):
    """Returns (config dict, {name: array}) for the tokenizer; see weights/README.md."""
    # CLIPTokenizer keeps the first 49152 - 256 - 2 merges after the '#version' line, as openai's CLIP does
    merges = [tuple(line.split()) for line in merge_lines[1: 49152 - 256 - 2 + 1]]
    n = len(vocab)
    by_id = [None] * n
    for token, i in vocab.items():
        if not 0 <= i < n or by_id[i] is not None:
            raise ExportError("tokenizer: vocab.json ids are not 0..N-1 without gaps")
        by_id[i] = token
    vocab_bytes = bytearray()
    for token in by_id:
        b = token.encode("utf-8")
        if b"\0" in b:
            raise ExportError("tokenizer: a vocabulary entry contains NUL")
        vocab_bytes += b + b"\0"
    merge_ids = np.zeros((len(merges), 3), dtype=np.int32)
    for rank, pair in enumerate(merges):
        if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab or pair[0] + pair[1] not in vocab:
            raise ExportError(f"tokenizer: merge {rank} {pair!r} names tokens outside the vocabulary")
        merge_ids[rank] = (vocab[pair[0]], vocab[pair[1]], vocab[pair[0] + pair[1]])
    byte_chars = bytes_to_unicode_table()
    byte_ids = np.zeros((2, 256), dtype=np.int32)  # [0][b]: symbol of byte b, [1][b]: same with '</w>'
    for b in range(256):
        ch = chr(byte_chars[b])
        if ch not in vocab or ch + "</w>" not in vocab:
            raise ExportError(f"tokenizer: byte symbol {ch!r} is missing from the vocabulary")
        byte_ids[0][b] = vocab[ch]
        byte_ids[1][b] = vocab[ch + "</w>"]
    tok = {
        "bos_token": special_token(config.get("bos_token", "<|startoftext|>")),
        "eos_token": special_token(config.get("eos_token", "<|endoftext|>")),
        "unk_token": special_token(config.get("unk_token", "<|endoftext|>")),
        "pad_token": special_token(config.get("pad_token", "<|endoftext|>")),
        "model_max_length": int(config.get("model_max_length", 77)),
        "do_lower_case": bool(config.get("do_lower_case", True)),
    }
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        if tok[key] not in vocab:
            raise ExportError(f"tokenizer: {key} {tok[key]!r} is not in the vocabulary")
        tok[key.replace("_token", "_id")] = vocab[tok[key]]
    if tok["model_max_length"] < 2 or tok["model_max_length"] > 4096:
        refuse("tokenizer", "model_max_length", tok["model_max_length"], "2..4096")
    blobs = {"tokenizer/vocab": np.frombuffer(bytes(vocab_bytes), dtype=np.uint8),
             "tokenizer/merges": merge_ids,
             "tokenizer/byte_ids": byte_ids}
    blobs.update(unicode_tables())
    return tok, blobs


def unicode_tables():
    """Character tables generated from Python's own unicodedata / str / html (see tokenizer.c).

    tokenizer.c reproduces what Python does to a prompt before BPE; every Unicode fact it needs comes from
    these tables, made here by asking the running Python, so the C agrees with the Python that exported the
    model (unicodedata.unidata_version is recorded in unicode/source). Range tables are int32 [n, 2]
    (first, last) or [n, 3] (first, last, value), sorted and disjoint; pair tables are sorted by their first
    column(s); tokenizer.c bsearches them."""
    tables = {"unicode/source": np.frombuffer(_unicode_source_text().encode("ascii"), dtype=np.uint8)}
    tables.update(_unicode_category_tables())
    tables.update(_unicode_whitespace_tables())
    tables.update(_clip_regex_tables())
    tables.update(_unicode_lower_tables())
    tables.update(_unicode_nfc_tables())
    tables.update(_html_unescape_tables())
    return tables


# CLIP's pre-tokenizer (openai/CLIP simple_tokenizer, transformers' CLIPTokenizer), compiled by the `regex`
# module with re.IGNORECASE; tokenizer.c's clip_regex_match tries its alternatives in this order:
#   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
# html.unescape's pattern; tokenizer.c's html_unescape implements exactly this one
HTML_CHARREF_PATTERN = r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)"
UNICODE_CATEGORIES = ("Cc Cf Cn Co Cs Ll Lm Lo Lt Lu Mc Me Mn Nd Nl No "
                      "Pc Pd Pe Pf Pi Po Ps Sc Sk Sm So Zl Zp Zs").split()
N_CODEPOINTS = 0x110000
HANGUL_SYLLABLES = range(0xAC00, 0xAC00 + 11172)  # decomposed and composed arithmetically (tokenizer.c)


def _clip_regex_module():
    """The `regex` module when installed (CLIP and transformers use it; its Unicode tables may be newer than
    unicodedata's), else None: \\p{L}, \\p{N} and \\s are then derived from unicodedata and str."""
    try:
        import regex
    except ImportError:
        return None
    return regex


def _unicode_source_text():
    import platform
    regex = _clip_regex_module()
    classes = (f"the regex module {regex.__version__}" if regex is not None
               else "unicodedata categories and str.isspace (regex module not installed)")
    return (f"Python {platform.python_version()}, unicodedata {unicodedata.unidata_version}; "
            f"CLIP pattern classes from {classes}")


def _all_chars():
    return "".join(map(chr, range(N_CODEPOINTS)))  # lone surrogates included: Python strings may hold them


def _unicode_ranges(flags):
    """Boolean per code point -> int32 [n, 2] (first, last) of the runs of True."""
    f = np.concatenate(([False], np.asarray(flags, dtype=bool), [False]))
    edges = np.flatnonzero(f[1:] != f[:-1])
    return (edges.reshape(-1, 2) - np.array([0, 1])).astype(np.int32)


def _unicode_value_ranges(values, skip):
    """Integer per code point -> int32 [n, 3] (first, last, value) runs, runs of value `skip` left out."""
    v = np.asarray(values)
    starts = np.concatenate(([0], np.flatnonzero(v[1:] != v[:-1]) + 1))
    ends = np.concatenate((starts[1:], [len(v)])) - 1
    keep = v[starts] != skip
    return np.stack([starts[keep], ends[keep], v[starts][keep]], axis=1).astype(np.int32)


def _unicode_category_tables():
    """unicodedata.category, for BasicTokenizer._clean_text (categories 'C*' dropped, 'Zs' made a space)."""
    code = {name: i for i, name in enumerate(UNICODE_CATEGORIES)}
    cats = np.fromiter((code[unicodedata.category(chr(c))] for c in range(N_CODEPOINTS)), dtype=np.int32,
                       count=N_CODEPOINTS)
    names = np.frombuffer("".join(UNICODE_CATEGORIES).encode("ascii"), dtype=np.uint8).reshape(-1, 2)
    return {"unicode/category_names": names, "unicode/category": _unicode_value_ranges(cats, -1)}


def _unicode_whitespace_tables():
    """str.isspace: str.strip() and str.split() (BasicTokenizer's whitespace_tokenize, simple_tokenizer's
    basic_clean and whitespace_clean)."""
    return {"unicode/isspace": _unicode_ranges([chr(c).isspace() for c in range(N_CODEPOINTS)])}


def _clip_regex_tables():
    """What each class of the CLIP pattern matches under re.IGNORECASE, one code point at a time, and which
    non-ASCII characters its literal letters match ('ſ' matches the s of 's and of <|startoftext|>).

    With IGNORECASE the `regex` module leaves U+0345 (combining ypogegrammeni, whose upper case is the
    letter Ι) out of both [\\p{L}] and [^\\s\\p{L}\\p{N}]: findall skips it like a space. Without `regex`
    installed, \\s is str.isspace less U+001C..U+001F (the Unicode White_Space property), [\\p{L}] and
    [\\p{N}] are the L* and N* categories, and the negated class also leaves out characters one of whose
    single-character case mappings is a letter or number, which reproduces `regex` on every assigned code
    point."""
    regex = _clip_regex_module()
    literal_letters = sorted(set("startoftext" "endoftext" "s" "t" "re" "ve" "m" "ll" "d"))
    chars = _all_chars()
    tables = {}
    if regex is not None:
        def matched(cls, flags):
            out = np.zeros(N_CODEPOINTS, dtype=bool)
            for m in regex.finditer(cls + "+", chars, flags):
                out[m.start():m.end()] = True
            return out
        space = matched(r"\s", 0)
        letter = matched(r"[\p{L}]", regex.IGNORECASE)
        number = matched(r"[\p{N}]", regex.IGNORECASE)
        other = matched(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
        ignorecase = [(m.start(), ord(ch)) for ch in literal_letters
                      for m in regex.finditer(ch, chars, regex.IGNORECASE) if m.group() != ch]
    else:
        import re
        first = np.frombuffer("".join(unicodedata.category(ch)[0] for ch in chars).encode("ascii"),
                              dtype=np.uint8)
        letter = first == ord("L")
        number = first == ord("N")
        space = np.array([ch.isspace() for ch in chars], dtype=bool)
        space[0x1C:0x20] = False
        other = ~(space | letter | number)
        for c in np.flatnonzero(other):
            ch = chr(c)
            for v in (ch.lower(), ch.upper(), ch.casefold(), ch.title()):
                if len(v) == 1 and unicodedata.category(v)[0] in "LN":
                    other[c] = False
        ignorecase = [(m.start(), ord(ch)) for ch in literal_letters
                      for m in re.finditer(ch, chars, re.IGNORECASE) if m.group() != ch]
    ignorecase.sort()
    tables["unicode/regex_space"] = _unicode_ranges(space)
    tables["unicode/regex_letter"] = _unicode_ranges(letter)
    tables["unicode/regex_number"] = _unicode_ranges(number)
    tables["unicode/regex_other"] = _unicode_ranges(other)
    tables["unicode/regex_ignorecase"] = np.array(ignorecase, dtype=np.int32).reshape(-1, 2)
    return tables


def _unicode_lower_tables():
    """str.lower(): the full mapping of every code point it changes ('İ' -> 'i̇', two characters), padded with
    -1, plus the Cased and Case_Ignorable properties of its Final_Sigma rule for 'Σ' (CPython's
    handle_capital_sigma), found by asking str.lower() itself: in 'A' + x + 'Σ' the sigma is final when x is
    case-ignorable or cased; in x + 'Σ' only when x is cased and not case-ignorable."""
    rows = []
    for c in range(N_CODEPOINTS):
        low = chr(c).lower()
        if low != chr(c):
            rows.append([c] + [ord(x) for x in low])
    width = max(len(r) for r in rows)
    lower = np.array([r + [-1] * (width - len(r)) for r in rows], dtype=np.int32)
    after_cased = np.array([("A" + chr(c) + "\u03a3").lower()[-1] == "\u03c2" for c in range(N_CODEPOINTS)])
    alone = np.array([(chr(c) + "\u03a3").lower()[-1] == "\u03c2" for c in range(N_CODEPOINTS)])
    return {"unicode/lower": lower, "unicode/cased": _unicode_ranges(alone),
            "unicode/case_ignorable": _unicode_ranges(after_cased & ~alone)}


def _unicode_nfc_tables():
    """unicodedata.normalize('NFC'): canonical combining classes, full canonical decompositions (NFD of each
    character; Hangul syllables are arithmetic) and the primary composites (first, second) -> composite:
    two-character canonical decompositions starting with a starter that NFC recomposes (this leaves out the
    composition exclusions)."""
    ccc = np.fromiter((unicodedata.combining(chr(c)) for c in range(N_CODEPOINTS)), dtype=np.int32,
                      count=N_CODEPOINTS)
    decomp_rows, decomp_data, compose = [], [], []
    for c in range(N_CODEPOINTS):
        raw = unicodedata.decomposition(chr(c))
        if not raw or raw.startswith("<") or c in HANGUL_SYLLABLES:
            continue
        nfd = unicodedata.normalize("NFD", chr(c))
        decomp_rows.append((c, len(decomp_data), len(nfd)))
        decomp_data.extend(ord(x) for x in nfd)
        parts = [int(x, 16) for x in raw.split()]
        if len(parts) == 2 and ccc[parts[0]] == 0:
            recomposed = unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chr(c)
            if recomposed != (unicodedata.normalize("NFC", chr(c)) == chr(c)):
                raise ExportError(f"unicodedata: U+{c:04X} recomposes inconsistently; tokenizer.c's NFC "
                                  "tables cannot be derived from this Python")
            if recomposed:
                compose.append((parts[0], parts[1], c))
    compose.sort()
    return {"unicode/ccc": _unicode_value_ranges(ccc, 0),
            "unicode/decomposition": np.array(decomp_rows, dtype=np.int32),
            "unicode/decomposition_data": np.array(decomp_data, dtype=np.int32),
            "unicode/composition": np.array(compose, dtype=np.int32)}


def _html_unescape_tables():
    """html.unescape: the HTML5 named references (html.entities.html5, names with and without ';') and the
    numeric-reference fix-ups (html._invalid_charrefs: replaced; html._invalid_codepoints: dropped)."""
    import html.entities
    if getattr(html, "_charref", None) is None or html._charref.pattern != HTML_CHARREF_PATTERN:
        raise ExportError("this Python's html.unescape differs from the one tokenizer.c implements")
    names = sorted(html.entities.html5)
    blob = bytearray()
    rows = []
    for name in names:
        value = [ord(x) for x in html.entities.html5[name]]
        if not name.isascii() or len(value) not in (1, 2):
            raise ExportError(f"html.entities.html5[{name!r}] does not fit tokenizer.c's table")
        rows.append((len(blob), value[0], value[1] if len(value) == 2 else -1))
        blob += name.encode("ascii") + b"\0"
    charrefs = sorted(html._invalid_charrefs.items())
    if any(len(v) != 1 for _, v in charrefs):
        raise ExportError("html._invalid_charrefs maps a number to more than one character")
    return {"html/entity_names": np.frombuffer(bytes(blob), dtype=np.uint8),
            "html/entities": np.array(rows, dtype=np.int32),
            "html/invalid_charrefs": np.array([(k, ord(v)) for k, v in charrefs], dtype=np.int32),
            "html/invalid_codepoints": np.array(sorted(html._invalid_codepoints), dtype=np.int32)}


# ---------------------------------------------------------------------------------------------
# Writing the model file

def flatten_config(prefix, value, out):
    """Nested JSON -> 'prefix.key=value' lines; lists of scalars are comma-separated."""
    if isinstance(value, dict):
        for k in sorted(value):
            if k.startswith("_") and k != "_class_name":
                continue
            flatten_config(f"{prefix}.{k}", value[k], out)
        return
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (dict, list, tuple)) for v in value):
            return  # nested lists (e.g. architectures metadata) are not used by t2v
        text = ",".join(scalar_text(v) for v in value)
    else:
        text = scalar_text(value)
    if "\n" in text or "=" in prefix:
        raise ExportError(f"config value {prefix} cannot be stored (contains a newline or '=')")
    out.append(f"{prefix}={text}")


def scalar_text(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_model(path, configs, tensors):
    """configs: {component: dict}; tensors: list of (name, array). Written to path + '.tmp', then renamed."""
    lines = []
    for component in sorted(configs):
        flatten_config(component, configs[component], lines)
    config_text = ("\n".join(lines) + "\n").encode("utf-8")

    entries = []
    for name, arr in tensors:
        if isinstance(arr, Int8Weight):
            entries.append((name, DTYPE_I8, arr))
            continue
        if arr.dtype == np.float32:
            code = DTYPE_F32
        elif arr.dtype == np.float16:
            code = DTYPE_F16
        elif arr.dtype == np.int32:
            code = DTYPE_I32
        elif arr.dtype == np.uint8:
            code = DTYPE_U8
        else:
            raise ExportError(f"internal: tensor {name} has dtype {arr.dtype}")
        entries.append((name, code, arr))

    def table_bytes(offsets):
        b = bytearray(struct.pack("<I", len(entries)))
        for (name, code, arr), (off, scale_off) in zip(entries, offsets):
            nb = name.encode("utf-8")
            b += struct.pack("<H", len(nb)) + nb
            group = arr.group if code == DTYPE_I8 else 0  # values per scale; 0: not quantised
            b += struct.pack("<BBI", code, len(arr.shape), group)
            b += struct.pack(f"<{len(arr.shape)}q", *arr.shape)
            scale_bytes = arr.scales.nbytes if code == DTYPE_I8 else 0
            b += struct.pack("<QQQQ", off, arr.nbytes, scale_off, scale_bytes)  # data, scales: offset, bytes
        return bytes(b)

    def blobs(arr):  # what is written for a tensor: its data, and an int8 one's scales after them
        return [arr.values, arr.scales] if isinstance(arr, Int8Weight) else [arr]

    head = MAGIC + struct.pack("<IIQ", VERSION, 0, len(config_text)) + config_text
    table_len = len(table_bytes([(0, 0)] * len(entries)))
    pos = len(head) + table_len
    offsets = []
    for _, _, arr in entries:
        where = []
        for blob in blobs(arr):
            pos = (pos + ALIGN - 1) // ALIGN * ALIGN
            where.append(pos)
            pos += blob.nbytes
        offsets.append((where[0], where[1] if len(where) > 1 else 0))
    total = pos
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(table_bytes(offsets))
            for (_, _, arr), where in zip(entries, offsets):
                for blob, off in zip(blobs(arr), where):
                    f.write(b"\0" * (off - f.tell()))
                    np.ascontiguousarray(blob).tofile(f)
            if f.tell() != total:
                raise ExportError(f"internal: wrote {f.tell()} bytes, planned {total}")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return total


# ---------------------------------------------------------------------------------------------
# Sources: a snapshot folder, a hub id, or random weights

# The pipelines t2v runs, and the classes of their components. The model file keeps model_index._class_name,
# which is how t2v knows which pipeline a file holds.
PIPELINE_CLASSES = {
    "TextToVideoSDPipeline": {"text_encoder": "CLIPTextModel", "tokenizer": "CLIPTokenizer",
                              "unet": "UNet3DConditionModel", "vae": "AutoencoderKL"},
    "StableDiffusionPipeline": {"text_encoder": "CLIPTextModel", "tokenizer": "CLIPTokenizer",
                                "unet": "UNet2DConditionModel", "vae": "AutoencoderKL"},
}
# Parts of an SD 1.x snapshot that only check or post-process images; Text2Video-Zero runs without them.
IGNORED_COMPONENTS = ("safety_checker", "feature_extractor")


def is_2d_unet(configs):
    return configs["model_index"]["_class_name"] == "StableDiffusionPipeline"


def read_json(path):
    if not os.path.isfile(path):
        raise ExportError(f"missing file {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ExportError(f"{path}: not valid JSON: {e}")


def scheduler_config(raw):
    """Drops the keys a saved config marks as defaulted, as Diffusers' from_config does: a scheduler made
    from this config then uses its own default for them (this is why DPMSolver gets 'linspace' spacing)."""
    defaulted = set(raw.get("_use_default_values", []))
    return {k: v for k, v in raw.items() if k not in defaulted and k != "_use_default_values"}


def resolve_source(src, variant):
    if os.path.isdir(src):
        return src
    if src.count("/") == 1 and not os.path.exists(src):
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise ExportError(f"{src} is not a folder; to download it as a hub id, huggingface_hub must be "
                              "importable (pip install huggingface_hub)")
        patterns = ["*.json", "*.txt"]
        suffix = f".{variant}" if variant else ""
        patterns += [f"*{suffix}.safetensors", f"*{suffix}.safetensors.index.json"]
        print(f"downloading {src} ({', '.join(patterns)})", file=sys.stderr)
        return snapshot_download(src, allow_patterns=patterns)
    raise ExportError(f"{src}: no such folder")


def export_folder(src, variant):
    index = read_json(os.path.join(src, "model_index.json"))
    pipeline = index.get("_class_name", "")
    if pipeline not in PIPELINE_CLASSES:
        raise ExportError(f"model_index.json: {pipeline!r} is not implemented by t2v (supported: "
                          f"{', '.join(PIPELINE_CLASSES)})")
    for component in IGNORED_COMPONENTS:
        entry = index.get(component)
        if entry and entry[0] is not None:
            print(f"note: {component} ({entry[1]}) is not exported: t2v does not use it", file=sys.stderr)
    for component, cls in PIPELINE_CLASSES[pipeline].items():
        entry = index.get(component)
        if not entry:
            raise ExportError(f"model_index.json has no '{component}' component")
        if entry[1] != cls:
            raise ExportError(f"{component} is a {entry[1]}; t2v implements {cls}")
        if not os.path.isdir(os.path.join(src, component)):
            raise ExportError(f"missing component folder {os.path.join(src, component)}")
    sched_raw = read_json(os.path.join(src, "scheduler", "scheduler_config.json"))
    configs = {
        "model_index": {"_class_name": index.get("_class_name", "")},
        "scheduler": scheduler_config(sched_raw),
        "text_encoder": read_json(os.path.join(src, "text_encoder", "config.json")),
        "unet": read_json(os.path.join(src, "unet", "config.json")),
        "vae": read_json(os.path.join(src, "vae", "config.json")),
    }
    loaded = {
        "text_encoder": rename_transformers_legacy(
            load_weights(os.path.join(src, "text_encoder"), ["model", "pytorch_model"], variant)),
        "unet": load_weights(os.path.join(src, "unet"), ["diffusion_pytorch_model"], variant),
        "vae": rename_vae_legacy_attention(
            load_weights(os.path.join(src, "vae"), ["diffusion_pytorch_model"], variant)),
    }
    tok, tok_blobs = tokenizer_blobs(*read_tokenizer_folder(os.path.join(src, "tokenizer")))
    return finish(configs, loaded, tok, tok_blobs)


def random_tokenizer(spec):
    """The real CLIP vocabulary when it lies beside the checkout (../shared/clip), else a small synthetic
    byte-level one built the way CLIP builds its vocabulary (bytes, bytes + '</w>', merges, specials)."""
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "clip")
    config = dict(spec["tokenizer"])
    if os.path.isfile(os.path.join(shared, "vocab.json")):
        vocab, merge_lines, _ = read_tokenizer_folder(shared)
        return vocab, merge_lines, config
    table = bytes_to_unicode_table()
    symbols = [chr(table[b]) for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols]
    merge_lines = ["#version: 0.2"]
    for a in "etaoinshr":
        for b in "etaoinshr":
            merge_lines.append(f"{a} {b}</w>")
            tokens.append(f"{a}{b}</w>")
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merge_lines, config


def export_random(name, seed, convert=None):
    """convert(name, array), if given, is applied to each weight as it is made (int8: so that the full-size
    model is never held in float32 as a whole)."""
    if name not in RANDOM_CONFIGS:
        raise ExportError(f"--random {name}: known configs are {', '.join(RANDOM_CONFIGS)}")
    spec = RANDOM_CONFIGS[name]
    rng = np.random.default_rng(seed)
    configs = {"model_index": {"_class_name": spec["model_index"]["_class_name"]},
               "scheduler": dict(spec["scheduler"]), "text_encoder": dict(spec["text_encoder"]),
               "unet": dict(spec["unet"]), "vae": dict(spec["vae"])}
    expected = expected_tensors(configs)
    loaded = {}
    for component, shapes in expected.items():
        tensors = {}
        for tname, shape in shapes.items():
            tensors[tname] = random_tensor(rng, tname, shape)
            if convert:
                tensors[tname] = convert(f"{component}/{tname}", tensors[tname])
        loaded[component] = tensors
    tok, blobs = tokenizer_blobs(*random_tokenizer(spec))
    return finish(configs, loaded, tok, blobs)


def random_tensor(rng, name, shape):
    """Weights that keep activations in a sane range: N(0, 1/fan_in) matrices, unit norms, small biases."""
    if name.endswith(".bias"):
        return (0.01 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if len(shape) == 1:  # norm scales
        return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    if "embedding" in name:
        fan_in = 1
    w = rng.standard_normal(shape, dtype=np.float32)
    w *= np.float32(1.0 / np.sqrt(fan_in))
    return w


def unet_defaults(configs):
    return UNET2D_DEFAULTS if is_2d_unet(configs) else UNET_DEFAULTS


def expected_tensors(configs):
    unet = with_defaults(configs["unet"], unet_defaults(configs))
    vae = with_defaults(configs["vae"], VAE_DEFAULTS)
    text = with_defaults(configs["text_encoder"], TEXT_DEFAULTS)
    (check_unet2d_config if is_2d_unet(configs) else check_unet_config)(unet)
    check_vae_config(vae)
    check_text_config(text)
    return {"text_encoder": text_encoder_tensors(text),
            "unet": (unet2d_tensors if is_2d_unet(configs) else unet_tensors)(unet), "vae": vae_tensors(vae)}


def finish(configs, loaded, tok, tok_blobs):
    expected = expected_tensors(configs)
    configs = dict(configs)
    configs["unet"] = with_defaults(configs["unet"], unet_defaults(configs))
    configs["vae"] = with_defaults(configs["vae"], VAE_DEFAULTS)
    configs["text_encoder"] = with_defaults(configs["text_encoder"], TEXT_DEFAULTS)
    configs["tokenizer"] = tok
    tensors = []
    for component in ("text_encoder", "unet", "vae"):
        matched = match_tensors(component, loaded[component], expected[component])
        for name, value in matched.items():
            tensors.append((f"{component}/{name}", value if isinstance(value, Int8Weight) else
                            np.asarray(value, dtype=np.float32)))
    for name, value in tok_blobs.items():
        tensors.append((name, value))
    return configs, tensors


def to_float16(tensors):
    """Every float32 weight rounded to IEEE half (round to nearest even, as numpy's astype does). Values beyond
    float16's range would become inf: such a weight is refused, naming it. Values that land in the subnormal
    range (|x| < 2**-14) lose precision, and those below 2**-25 become 0: both are counted and reported.
    A float16 checkpoint (--variant fp16) was widened exactly on reading, so this gives its bits back."""
    out, n_sub, n_zero, n_total = [], 0, 0, 0
    for name, arr in tensors:
        if arr.dtype != np.float32:
            out.append((name, arr))
            continue
        with np.errstate(over="ignore"):
            half = arr.astype(np.float16)
        finite = np.isfinite(arr)
        overflow = np.count_nonzero(finite & ~np.isfinite(half))
        if overflow:
            big = float(np.max(np.abs(arr[finite & ~np.isfinite(half)])))
            raise ExportError(f"tensor {name}: {overflow} values overflow float16 (largest magnitude {big:.6g} > "
                              "65504); export it with --dtype f32")
        mag = np.abs(half)
        n_sub += int(np.count_nonzero((mag < np.float16(2.0 ** -14)) & (mag > 0)))
        n_zero += int(np.count_nonzero((half == 0) & (arr != 0)))
        n_total += arr.size
        out.append((name, half))
    print(f"float16: {n_total} weights, 0 overflow, {n_sub} subnormal, {n_zero} rounded to zero",
          file=sys.stderr)
    return out


class Int8Weight:
    """A weight quantised to int8 (weights/README.md): values in t2v's reduction order, one float32 scale per group
    of `group` consecutive values, and its PyTorch shape; rel_max / rel_rms: the dequantised weight's maximum and
    RMS error relative to the weight's RMS; sq_err, sq_sum: the sums for the totals."""

    def __init__(self, shape, values, scales, group, rel_max, rel_rms, sq_err, sq_sum):
        self.shape, self.values, self.scales, self.group = tuple(shape), values, scales, group
        self.rel_max, self.rel_rms, self.sq_err, self.sq_sum = rel_max, rel_rms, sq_err, sq_sum
        self.nbytes = values.nbytes


def int8_group_size(name, arr):
    """G for a weight that int8 stores, or None where it stays float32. Quantised: every Linear and Conv weight
    of the three components and the token embedding (2-D or more, named *.weight; not the positional
    embedding). G = 64 where it divides the input channels (a Linear's row, an embedding's width), else 32, else
    the weight stays float32: a convolution's groups then never straddle two taps."""
    component = name.split("/", 1)[0]
    if component not in ("text_encoder", "unet", "vae") or not name.endswith(".weight") or arr.ndim < 2:
        return None
    if "position_embedding" in name or arr.dtype != np.float32:
        return None
    for group in (64, 32):
        if arr.shape[1] % group == 0:
            return group
    return None


def quantise_int8(name, arr):
    """arr as an Int8Weight, or unchanged where it stays float32. A convolution (out, in, kh, kw) / (out, in, 3, 1,
    1) is permuted to (out, taps, in), t2v's reduction order (k = tap * in + channel), before its rows are cut
    into groups. Per group: s = max|x| / 127 (float32), q = clamp(rint(x / s), -127, 127) computed in float64
    (ties to even); an all-zero group has s = 0 and q = 0."""
    group = int8_group_size(name, arr)
    if group is None:
        return arr
    rows = arr.transpose(0, *range(2, arr.ndim), 1) if arr.ndim > 2 else arr
    grouped = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, group)
    scales = (np.abs(grouped).max(axis=1) / np.float32(127)).astype(np.float32)
    s64 = scales.astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s64 > 0, np.rint(grouped / s64), 0.0)
    q = np.clip(q, -127, 127).astype(np.int8)
    err = (q.astype(np.float32) * scales[:, None]).astype(np.float64) - grouped
    sq_err, sq_sum = float(np.sum(err * err)), float(np.sum(grouped.astype(np.float64) ** 2))
    rms = np.sqrt(sq_sum / grouped.size) if sq_sum > 0 else 1.0
    return Int8Weight(arr.shape, q.reshape(-1), scales, group, float(np.abs(err).max()) / rms,
                      float(np.sqrt(sq_err / grouped.size)) / rms, sq_err, sq_sum)


def to_int8(tensors):
    """Every weight int8_group_size picks quantised (quantise_int8; --random ones already are), the others as
    they are. Prints each quantised weight's maximum and RMS error relative to its RMS, and the totals."""
    out, n_q, n_values, n_float, sq_err, sq_sum, worst = [], 0, 0, 0, 0.0, 0.0, (0.0, "")
    for i, (name, arr) in enumerate(tensors):
        tensors[i] = (name, None)  # frees the float32 weight as soon as it is converted
        w = arr if isinstance(arr, Int8Weight) else quantise_int8(name, arr)
        out.append((name, w))
        if not isinstance(w, Int8Weight):
            if w.dtype == np.float32:
                n_float += w.size
            continue
        n_q += 1
        n_values += w.values.size
        sq_err += w.sq_err
        sq_sum += w.sq_sum
        worst = max(worst, (w.rel_max, name))
        print(f"int8 {name} {list(w.shape)} G={w.group}: max err {w.rel_max:.3f}, RMS err {w.rel_rms:.2e} "
              "(of the weight's RMS)", file=sys.stderr)
    tensors[:] = out
    print(f"int8: {n_q} weights, {n_values / 1e6:.1f}M values quantised, RMS error {np.sqrt(sq_err / max(sq_sum, 1e-300)):.2e} "
          f"of their RMS, largest error {worst[0]:.3f} of its weight's RMS ({worst[1]}); "
          f"{n_float / 1e6:.2f}M values stay float32", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export a Diffusers text-to-video model folder to a t2v model file.")
    ap.add_argument("src", nargs="?", help="Diffusers model folder (hub snapshot layout) or hub id")
    ap.add_argument("out", help="output .t2v file")
    ap.add_argument("--variant", default=None, help="weights variant, e.g. fp16 (*.fp16.safetensors)")
    ap.add_argument("--random", metavar="CONFIG", default=None,
                    help="write random weights with a known config instead: ms-1.7b (the real full-size "
                         "configs), sd-1.5 (Stable Diffusion 1.5's full-size configs, for Text2Video-Zero) or "
                         "tiny (the test fixture's shape)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random weights")
    ap.add_argument("--dtype", choices=("f32", "f16", "int8"), default="f32",
                    help="how weights are stored: f32 (default), f16 (IEEE half; lossless for --variant fp16) "
                         "or int8 (Linear and Conv weights and the token embedding, symmetric, a float32 scale "
                         "per group of 64 or 32 values; weights/README.md)")
    args = ap.parse_args(argv)
    try:
        if args.random:
            if args.src:
                raise ExportError("give either SRC or --random, not both")
            configs, tensors = export_random(args.random, args.seed,
                                             quantise_int8 if args.dtype == "int8" else None)
        else:
            if not args.src:
                raise ExportError("SRC is required (or --random CONFIG)")
            configs, tensors = export_folder(resolve_source(args.src, args.variant), args.variant)
        if args.dtype == "f16":
            tensors = to_float16(tensors)
        if args.dtype == "int8":
            tensors = to_int8(tensors)
        total = write_model(args.out, configs, tensors)
    except ExportError as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 1
    n_weights = sum(int(np.prod(a.shape)) for n, a in tensors
                    if isinstance(a, Int8Weight) or a.dtype in (np.float32, np.float16))
    kind = {"f16": "float16", "int8": "int8 and float32"}.get(args.dtype, "float32")
    print(f"wrote {args.out}: {len(tensors)} tensors, {n_weights / 1e6:.1f}M {kind} parameters, "
          f"{total / 2**20:.1f} MiB ({total} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
