"""gen_image.py - reference fixtures for the image towers (FastViT MCi, ViT).

Builds the real open_clip image tower (open_clip TimmModel wrapping the timm
trunk, keys `visual.trunk.*`) for reduced versions of all six MobileCLIP2
image trunks - same block types, fewer blocks, narrower stages, small
images - and, with --full, the full-size S0, S2 and B towers.  Writes one
safetensors file per tower holding:

  * every small model tensor under its open_clip name (BN/LN parameters,
    measured BN statistics, biases, layer scales, num_batches_tracked);
  * every large weight (conv/linear kernels, pos_embed, cls_token) as a
    recipe of tests/reference/detweights.py (metadata "detweights");
  * the input images as a recipe (metadata "image_input": [name, shape,
    lo, hi]) and the reduced configuration (metadata "image_config");
  * references computed in float64: ref.image.<name> for every activation
    the C tower dumps, ref.image.embed_fused (timm's reparameterize_model on
    a deep copy), ref.image.attn (softmax probabilities of one head of one
    attention block, metadata "attn_probe": [stage, block, head]), ref.r and
    ref.image.grad_input = d sum(r * embed) / d input.

Weights follow ../shared/arch-spec.md section 12: conv/linear kernels
uniform with std 1/sqrt(fan_in) (half on residual output projections), BN
gamma U(0.5, 1.5), beta N(0, 0.2^2), biases N(0, 0.05^2), layer scales
U(0.1, 0.6); BN running statistics are measured on the BN inputs of a few
random images (train-mode pass, cumulative average) and then perturbed
(mean +- 0.1 std, var x U(0.8, 1.25)), so activations stay well scaled and a
wrong statistic shows.

Regenerate the committed fixtures (tests/fixtures/image_*.safetensors):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_image.py

Full-size fixtures into tests/reference/out/ (git-ignored; see check.sh):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_image.py --full
"""
import argparse
import copy
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon  # noqa: E402
from detweights import Recipes, expand, uniform_std  # noqa: E402

torch, open_clip = refcommon.setup()
import torch.nn as nn  # noqa: E402
import timm  # noqa: E402
from timm.layers import LayerNorm2d, SqueezeExcite  # noqa: E402
from timm.models import fastvit as tfv  # noqa: E402
from timm.models import vision_transformer_hybrid as tvh  # noqa: E402
from timm.models._registry import register_model  # noqa: E402
from open_clip.timm_model import TimmModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED = 1234
OPENAI = dict(lo=-1.75, hi=2.0)     # roughly the range of OpenAI-normalized pixels
UNIT = dict(lo=0.0, hi=1.0)         # mean 0 / std 1 preprocessing: pixels / 255


# A reduced vit_base_mci_224: the same ConvStem (k 4/2/2, stride 4/2/2,
# channels D/4, D/4, D) and ViT settings, at width D.
@register_model
def vit_base_mci_reduced(pretrained=False, width=64, **kwargs):
    backbone = tvh.ConvStem(channels=(width // 4, width // 4, width), stride=(4, 2, 2),
                            kernel_size=(4, 2, 2), padding=0, in_chans=3, act_layer=nn.GELU)
    args = dict(embed_dim=width, depth=12, num_heads=12, no_embed_class=True)
    return tvh._create_vision_transformer_hybrid(
        "vit_base_mci_224", backbone=backbone, embed_args=dict(proj=False),
        pretrained=pretrained, **dict(args, **kwargs))


# name -> (timm model, image size, E, model kwargs, input range, N)
VARIANTS = {
    "s0": ("fastvit_mci0", 64, 32, dict(layers=(1, 1, 2, 2), embed_dims=(16, 32, 64, 128)),
           UNIT, 2),
    "s2": ("fastvit_mci2", 64, 24, dict(layers=(2, 1, 1, 1), embed_dims=(20, 40, 80, 160)),
           UNIT, 2),
    "s3": ("fastvit_mci3", 80, 32, dict(layers=(1, 1, 1, 2, 1),
                                        embed_dims=(8, 16, 32, 64, 128)), OPENAI, 2),
    "s4": ("fastvit_mci4", 80, 24, dict(layers=(1, 2, 1, 1, 2),
                                        embed_dims=(12, 24, 48, 96, 192)), OPENAI, 2),
    "b": ("vit_base_mci_reduced", 64, 32, dict(width=64, depth=2, num_heads=4, img_size=64),
          UNIT, 2),
    "l14": ("vit_large_patch14_clip_224", 56, 24,
            dict(embed_dim=64, depth=2, num_heads=4, img_size=56), OPENAI, 2),
}
# Every fixture holds N >= 2 images: with a single image, torch 1.13 returns
# a wrong input gradient through an eval-mode BatchNorm2d whose output gradient
# arrives transposed (fastvit AttentionBlock: BN -> flatten(2).transpose ->
# qkv), off by ~100 % against finite differences.  check_grad() below guards
# against such surprises.
FULL = {
    "s0_full": ("fastvit_mci0", 256, 512, {}, UNIT, 2),
    "s2_full": ("fastvit_mci2", 256, 512, {}, UNIT, 2),
    "b_full": ("vit_base_mci_224", 224, 512, {}, UNIT, 2),
}
# Full-size towers name their open_clip model so the C test can compare the
# configuration read from timm with mobileclip/config.c.
VARIANT_OF = {"s0_full": "MobileCLIP2-S0", "s2_full": "MobileCLIP2-S2", "b_full": "MobileCLIP2-B"}
POOL = {"fastvit": "avg", "vit": "token"}


def kind_of(timm_name):
    return "fastvit" if timm_name.startswith("fastvit") else "vit"


def build(timm_name, size, embed, kwargs):
    model = TimmModel(timm_name, embed_dim=embed, image_size=size, pool=POOL[kind_of(timm_name)],
                      proj=None, model_kwargs=dict(kwargs))
    return model.eval()


# ---- configuration read back from the built model ----

def fastvit_config(trunk, size, embed, name):
    stages = list(trunk.stages)
    cfg = dict(kind="fastvit", timm=name, image_size=size, embed=embed, n_stages=len(stages),
               widths=[], depths=[], attn=[], se_downsample=[], mlp_ratio=0,
               attn_layernorm=0, stem_scale_branch=int(trunk.stem[0].conv_scale is not None))
    for st in stages:
        blk = st.blocks[0]
        cfg["widths"].append(int(blk.mlp.fc1.in_channels))
        cfg["depths"].append(len(st.blocks))
        is_attn = isinstance(blk, tfv.AttentionBlock)
        cfg["attn"].append(int(is_attn))
        se = 0
        if isinstance(st.downsample, tfv.PatchEmbed):
            se = int(isinstance(st.downsample.proj[0].se, SqueezeExcite))
        cfg["se_downsample"].append(se)
        cfg["mlp_ratio"] = blk.mlp.fc1.out_channels // blk.mlp.fc1.in_channels
        if is_attn:
            cfg["attn_layernorm"] = int(isinstance(blk.norm, LayerNorm2d))
    return cfg


def vit_config(trunk, size, embed, name):
    blk = trunk.blocks[0]
    conv_stem = int(hasattr(trunk.patch_embed, "backbone"))
    if conv_stem:
        patch = 16
    else:
        patch = int(trunk.patch_embed.proj.kernel_size[0])
    return dict(kind="vit_b_mci" if conv_stem else "vit_l14", timm=name, image_size=size,
                embed=embed, width=int(trunk.embed_dim), heads=int(blk.attn.num_heads),
                layers=len(trunk.blocks), mlp=int(blk.mlp.fc1.out_features), patch=patch,
                ln_eps=float(blk.norm1.eps), conv_stem=conv_stem,
                norm_pre=int(not isinstance(trunk.norm_pre, nn.Identity)),
                cls_has_pos=int(not trunk.no_embed_class))


# ---- weights ----

def is_large(name, shape):
    leaf = name.split(".")[-1]
    return (leaf == "weight" and len(shape) >= 2) or leaf in ("pos_embed", "cls_token")


def large_range(name, shape):
    leaf = name.split(".")[-1]
    if leaf == "pos_embed":
        return uniform_std(0.1)
    if leaf == "cls_token":
        return uniform_std(0.5)
    std = 1.0 / math.sqrt(max(int(np.prod(shape[1:])), 1))
    if any(k in name for k in ("attn.proj", "mlp.fc2", "token_mixer.proj.weight")):
        std *= 0.5
    return uniform_std(std)


def small_value(rng, sd_names, name, shape):
    leaf = name.split(".")[-1]
    stem = name[: -len(leaf)]
    is_bn = (stem + "running_mean") in sd_names
    if leaf == "gamma":                       # layer scale
        return rng.uniform(0.1, 0.6, shape)
    if leaf == "weight":                      # BN / LN gamma
        return rng.uniform(0.5, 1.5, shape)
    if leaf == "bias":
        is_norm = is_bn or "norm" in name
        return rng.normal(0, 0.2 if is_norm else 0.05, shape)
    if leaf == "running_mean":
        return np.zeros(shape)
    if leaf == "running_var":
        return np.ones(shape)
    raise ValueError(f"no rule for {name} {shape}")


def assign_weights(model, rec, seed):
    """Large tensors from recipes, small ones from (seed, name); fp16-rounded."""
    sd = model.state_dict()
    names = set(sd)
    new = {}
    for name, t in sd.items():
        full = "visual." + name
        shape = tuple(t.shape)
        if not t.is_floating_point():
            new[name] = t.clone()
        elif is_large(name, shape):
            lo, hi = large_range(name, shape)
            new[name] = torch.from_numpy(rec.draw(full, shape, lo, hi))
        else:
            v = small_value(refcommon._rng_for(seed, full), names, name, shape)
            v = np.asarray(v, np.float32).astype(np.float16).astype(np.float32)
            new[name] = torch.from_numpy(v.reshape(shape))
    model.load_state_dict(new, strict=True)


def calibrate_bn(model, images, seed):
    """Measure every BN's input statistics, then perturb them."""
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    for _, m in bns:
        m.reset_running_stats()
        m.momentum = None          # cumulative average over the calibration batches
        m.train()
    with torch.no_grad():
        for x in images:
            model(x)
    for name, m in bns:
        m.eval()
        r = refcommon._rng_for(seed + 1, "visual." + name + ".stats")
        std = m.running_var.sqrt().numpy()
        mean = m.running_mean.numpy() + 0.1 * std * r.normal(0, 1, std.shape)
        var = m.running_var.numpy() * r.uniform(0.8, 1.25, std.shape)
        m.running_mean.copy_(torch.from_numpy(mean))
        m.running_var.copy_(torch.from_numpy(var))
    model.eval()


# ---- references ----

def attention_probs(attn_mod, tokens, head):
    """softmax(q k^T * scale) of one head; tokens [N, T, C]."""
    N, T, C = tokens.shape
    qkv = attn_mod.qkv(tokens).reshape(N, T, 3, attn_mod.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = qkv[0][:, head], qkv[1][:, head]
    return ((q * attn_mod.scale) @ k.transpose(-2, -1)).softmax(-1)


def capture(model, kind, probe):
    """Register hooks that record the activations the C tower dumps."""
    trunk, acts, hooks = model.trunk, {}, []

    def out_hook(key):
        def f(mod, inp, out):
            acts[key] = out.detach().clone()
        return f

    def in_hook(key):
        def f(mod, inp):
            acts[key] = inp[0].detach().clone()
        return f

    reg = lambda m, key: hooks.append(m.register_forward_hook(out_hook(key)))  # noqa: E731
    if kind == "fastvit":
        reg(trunk.stem, "image.stem")
        for k, st in enumerate(trunk.stages):
            reg(st, f"image.stage.{k}")
        reg(trunk.final_conv, "image.final_conv")
        hooks.append(trunk.head.fc.register_forward_pre_hook(in_hook("image.pooled")))
        stage, block, head = probe
        blk = trunk.stages[stage].blocks[block]

        def attn_hook(mod, inp):
            x = inp[0]
            tokens = x.flatten(2).transpose(-2, -1)
            acts["image.attn"] = attention_probs(mod, tokens, head).detach().clone()
        hooks.append(blk.token_mixer.register_forward_pre_hook(attn_hook))
    else:
        pe = trunk.patch_embed
        reg(pe.backbone if hasattr(pe, "backbone") else pe.proj, "image.stem")
        hooks.append(trunk.blocks[0].register_forward_pre_hook(in_hook("image.tokens")))
        for k, blk in enumerate(trunk.blocks):
            reg(blk, f"image.block.{k}")
        reg(trunk.norm, "image.norm")
        hooks.append(trunk.head.register_forward_pre_hook(in_hook("image.pooled")))
        _, block, head = probe

        def attn_hook(mod, inp):
            acts["image.attn"] = attention_probs(mod, inp[0], head).detach().clone()
        hooks.append(trunk.blocks[block].attn.register_forward_pre_hook(attn_hook))
    return acts, hooks


def check_grad(model, x_np, r_np, grad, n_probe=3, h=1e-5):
    """Central differences (float64) at a few pixels against autograd."""
    r = torch.from_numpy(r_np.astype(np.float64))
    flat = grad.reshape(-1)
    idx = np.random.default_rng(SEED + 5).choice(flat.size, n_probe, replace=False)
    scale = np.abs(flat).max()
    worst = 0.0
    with torch.no_grad():
        for i in idx:
            xp = torch.from_numpy(x_np.astype(np.float64)).reshape(-1)
            xm = xp.clone()
            xp[i] += h
            xm[i] -= h
            lp = (model(xp.reshape(x_np.shape)) * r).sum().item()
            lm = (model(xm.reshape(x_np.shape)) * r).sum().item()
            worst = max(worst, abs((lp - lm) / (2 * h) - flat[i]) / scale)
    if worst > 1e-5:
        sys.exit("autograd input gradient disagrees with finite differences (%.2e of absmax)"
                 % worst)
    return worst


def absmax_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def generate(name, spec, out_dir):
    timm_name, size, embed, kwargs, rng_in, N = spec
    kind = kind_of(timm_name)
    torch.manual_seed(0)
    model = build(timm_name, size, embed, kwargs)
    rec = Recipes(SEED)
    assign_weights(model, rec, SEED)
    trunk = model.trunk
    if kind == "fastvit":
        cfg = fastvit_config(trunk, size, embed, timm_name)
        last = cfg["n_stages"] - 1
        probe = [last, cfg["depths"][last] - 1, 1]
    else:
        cfg = vit_config(trunk, size, embed, timm_name)
        probe = [0, cfg["layers"] - 1, 1]
    model = model.double()

    # BN statistics from a few random images of the input distribution.
    crng = np.random.default_rng(SEED + 7)
    calib = [torch.from_numpy(crng.uniform(rng_in["lo"], rng_in["hi"], (4, 3, size, size)))
             for _ in range(2)]
    calibrate_bn(model, calib, SEED)

    # The input and the gradient seed r.
    in_shape = [N, 3, size, size]
    x_np = expand("input.image", tuple(in_shape), rng_in["lo"], rng_in["hi"], SEED)
    r_np = np.random.default_rng(SEED + 3).normal(0, 1, (N, embed)).astype(np.float32)

    # float64 forward with hooks, then d sum(r * embed) / d x.
    acts, hooks = capture(model, kind, probe)
    x = torch.from_numpy(x_np.astype(np.float64)).requires_grad_(True)
    emb = model(x)
    (emb * torch.from_numpy(r_np.astype(np.float64))).sum().backward()
    for h in hooks:
        h.remove()
    acts["image.embed"] = emb.detach()
    grad = x.grad.detach().numpy()
    fd_err = check_grad(model, x_np, r_np, grad)

    # timm's fused model (FastViT) on a deep copy.
    from timm.utils import reparameterize_model
    fused = reparameterize_model(model)
    with torch.no_grad():
        emb_fused = fused(x.detach()).numpy()
    n_unfused = len(model.state_dict())
    n_fused = len(fused.state_dict())

    # For information: how far the float32 torch model is from float64.
    m32 = copy.deepcopy(model).float()
    x32 = torch.from_numpy(x_np).requires_grad_(True)
    e32 = m32(x32)
    (e32 * torch.from_numpy(r_np)).sum().backward()
    d_emb32 = absmax_rel(e32.detach().numpy(), emb.detach().numpy())
    d_grad32 = absmax_rel(x32.grad.numpy(), grad)

    # Fixture: small tensors, references, recipes, metadata.
    tensors = {}
    for k, v in model.state_dict().items():
        if is_large(k, tuple(v.shape)):
            continue
        a = v.detach().numpy()
        tensors["visual." + k] = a.astype(np.float32) if a.dtype == np.float64 else a
    for k, v in acts.items():
        tensors["ref." + k] = v.numpy().astype(np.float32)
    tensors["ref.image.embed_fused"] = emb_fused.astype(np.float32)
    tensors["ref.image.grad_input"] = grad.astype(np.float32)
    tensors["ref.r"] = r_np
    meta = rec.metadata()
    meta.update({
        "image_config": json.dumps(cfg),
        "image_input": json.dumps(["input.image", in_shape, rng_in["lo"], rng_in["hi"]]),
        "attn_probe": json.dumps(probe),
        "variant": VARIANT_OF.get(name, ""),
        "reference": "open_clip TimmModel + timm %s, float64" % timm.__version__,
        "fp32_vs_fp64": "embed %.2e grad %.2e (relative to absmax)" % (d_emb32, d_grad32),
    })
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "image_%s.safetensors" % name)
    refcommon.save_safetensors(path, tensors, meta)

    e = emb.detach().numpy()
    print("%-8s %-28s %s  keys %d -> %d fused  embed std %.3f absmax %.2f  fused-unfused %.1e  "
          "fp32 vs fp64: embed %.1e grad %.1e  fd %.0e  %d bytes" %
          (name, timm_name, "x".join(map(str, in_shape)), n_unfused, n_fused, e.std(),
           np.abs(e).max(), absmax_rel(emb_fused, e), d_emb32, d_grad32, fd_err,
           os.path.getsize(path)))
    for k in sorted(acts):
        a = acts[k].numpy()
        print("    %-22s %-18s std %.3f absmax %.2f" % (k, tuple(a.shape), a.std(), np.abs(a).max()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full-size S0, S2, B into --out")
    ap.add_argument("--out", default=None, help="output folder")
    ap.add_argument("names", nargs="*", help="subset of variants")
    a = ap.parse_args()
    table = FULL if a.full else VARIANTS
    out = a.out or (os.path.join(ROOT, "tests", "reference", "out") if a.full
                    else os.path.join(ROOT, "tests", "fixtures"))
    for name in a.names or table:
        if name not in table:
            sys.exit("unknown variant %s (have %s)" % (name, ", ".join(table)))
        generate(name, table[name], os.path.abspath(out))


if __name__ == "__main__":
    main()
