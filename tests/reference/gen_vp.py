"""gen_vp.py - reference fixtures for the padding visual prompt (tests/test_vprompt.c).

Builds the real open_clip image tower (TimmModel + timm trunk) of reduced
MobileCLIP2 trunks exactly as tests/reference/gen_image.py does (same
block types, fewer blocks, narrower stages, 64 px images; same weight
scheme: large weights as detweights recipes, small ones stored, BN
statistics measured then perturbed), then for a batch of N images computes
in float64 (arch-spec section 10, paper-protocol section 10):

    x'     = x + ctx * mask            ctx [3, S, S], mask = 1 on a border of width b
    f      = model(x')                 the eval-mode tower, [N, E]
    logits = scale * normalize(f) @ normalize(t).T      t [K, E] fixed class embeddings
    loss   = cross_entropy(logits, y)  (batch mean)

and d loss / d ctx by autograd (of ctx * mask: zero in the hole), plus,
for information, the float32 torch values against float64.  The class
embeddings sit near the images' mean feature direction so that at scale
100 the loss is about 2 (neither flat nor saturated).

Also writes the paper-style visual prompt files read by the .pt test:
    vp_paper_b8.pt      torch.save({'ctx': [3, 64, 64], 'meta': {...,
                        'prompt_type': 'vis', 'border_size': 8}}), ctx =
                        0.02 N(0, 1) * mask, as the paper's CoOpVisPrompt
                        stores it (paper-protocol sections 10 and 13)
    vp_paper_nob.pt     [3, 32, 32] with border 5, no border_size in meta
                        (the reader recomputes it from the mask) and two
                        non-zero values inside the hole (dropped, counted)
and their border pieces (Bahng's pad_up [3, b, S], pad_down [3, b, S],
pad_left [3, S - 2b, b], pad_right [3, S - 2b, b]) sliced with numpy.

Regenerate (about 180 kB of safetensors, 50 kB + 13 kB of .pt):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_vp.py

Layout of tests/fixtures/vp_ref_<case>.safetensors, one per case in CASES
(each its own recipes: the variants share tensor names with other shapes):
  metadata     detweights recipes + seed, "case" (JSON {name, variant,
               border, scale, N, K, attn_probe, attn_grid}), image_config, image_input ([name,
               [N, 3, S, S], lo, hi]: a recipe)
  visual.*     the tower's small tensors (F32; BN statistics, biases, ...)
  input.pad_up, input.pad_down, input.pad_left, input.pad_right
               F32 the prompt's border pieces (zero in the hole)
  input.txt    F32 [K, E] class embeddings (raw; both sides normalise)
  input.labels I64 [N]
  ref.loss     F32 []
  ref.logits   F32 [N, K]
  ref.grad.pad_up, ...  F32 d loss / d ctx on the border pieces (the
               generator checks that the hole's gradient is zero)
  ref.attnmap  F32 [S, S] the paper's attention map of image 0 with the
               prompt (case attn_probe = [stage, block, head]; softmax
               probabilities of that head, mean over queries, min-max,
               F.interpolate bilinear, align_corners False)
and tests/fixtures/vp_pt_pieces.safetensors: <tag>.pad_up, ... of the two
.pt files (tags pt_b8, pt_nob).
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
import gen_image  # noqa: E402  (the towers, weights and BN calibration)
from detweights import Recipes, expand  # noqa: E402

torch = gen_image.torch
F = torch.nn.functional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED = 4711
N_IMG, N_CLS = 4, 5
SCALE = 100.0          # the paper's fixed logit scale
TXT_SPREAD = 0.1       # class embedding = images' mean direction + this * unit noise
INIT_STD = 0.1         # the reference generator's prompt init (arch-spec section 10)

# name, gen_image variant, border width (none a multiple of 8 or 16),
# attention probe (stage, block, head) of the map
CASES = [
    ("s0_b10", "s0", 10, (3, 1, 2)),    # FastViT: RepMixer, BN attention
    ("b_b13", "b", 13, (0, 1, 3)),      # ViT with the conv stem
]


def mask_of(S, b):
    m = np.zeros((3, S, S))
    m[:, :b, :] = 1
    m[:, S - b:, :] = 1
    m[:, :, :b] = 1
    m[:, :, S - b:] = 1
    return m


def pieces(full, b):
    """Bahng's four pieces of a [3, S, S] array."""
    S = full.shape[-1]
    return {"pad_up": full[:, :b, :], "pad_down": full[:, S - b:, :],
            "pad_left": full[:, b:S - b, :b], "pad_right": full[:, b:S - b, S - b:]}


def loss_of(model, x, ctx, mask, txt, labels):
    f = model(x + ctx * mask)
    logits = SCALE * F.normalize(f, dim=-1) @ F.normalize(txt, dim=-1).T
    return F.cross_entropy(logits, labels), logits


def attention_map(model, kind, x1, probe):
    """The paper's map of one image: softmax(q scale k^T) of one head, mean
    over queries, min-max, bilinear (align_corners=False) to the input size.
    ViT: the class token's key column is left out."""
    stage, block, head = probe
    trunk, got = model.trunk, {}
    if kind == "fastvit":
        mod = trunk.stages[stage].blocks[block].token_mixer

        def hook(m, inp):
            got["p"] = gen_image.attention_probs(m, inp[0].flatten(2).transpose(-2, -1), head)
    else:
        mod = trunk.blocks[block].attn

        def hook(m, inp):
            got["p"] = gen_image.attention_probs(m, inp[0], head)
    h = mod.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(x1)
    h.remove()
    p = got["p"][0]                                  # [T, T]
    m = p.mean(0)[0 if kind == "fastvit" else 1:]    # keys
    G = int(round(math.sqrt(m.numel())))
    m = (m - m.min()) / (m.max() - m.min())
    S = x1.shape[-1]
    up = F.interpolate(m.reshape(1, 1, G, G), size=(S, S), mode="bilinear",
                       align_corners=False)
    return up[0, 0].numpy(), G


def run_case(name, variant, b, probe, out):
    timm_name, size, embed, kwargs, rng_in, _ = gen_image.VARIANTS[variant]
    kind = gen_image.kind_of(timm_name)
    rec, tensors, meta = Recipes(SEED), {}, {}
    torch.manual_seed(0)
    model = gen_image.build(timm_name, size, embed, kwargs)
    gen_image.assign_weights(model, rec, SEED)
    trunk = model.trunk
    cfg = (gen_image.fastvit_config(trunk, size, embed, timm_name) if kind == "fastvit"
           else gen_image.vit_config(trunk, size, embed, timm_name))
    model = model.double()
    crng = np.random.default_rng(SEED + 7)
    calib = [torch.from_numpy(crng.uniform(rng_in["lo"], rng_in["hi"], (4, 3, size, size)))
             for _ in range(2)]
    gen_image.calibrate_bn(model, calib, SEED)

    # Inputs: images (a recipe), prompt, class embeddings, labels.
    in_shape = [N_IMG, 3, size, size]
    x_name = "input.image"
    x_np = expand(x_name, tuple(in_shape), rng_in["lo"], rng_in["hi"], SEED)
    r = np.random.default_rng(SEED + 11 + len(name))
    mask = mask_of(size, b)
    ctx_np = (INIT_STD * r.normal(0, 1, (3, size, size)) * mask).astype(np.float32)
    # Class embeddings near the images' mean direction, as trained CLIP
    # text features sit: cosines differ by a few hundredths, so at scale 100
    # the softmax is neither flat nor saturated.
    with torch.no_grad():
        f0 = F.normalize(model(torch.from_numpy(x_np.astype(np.float64))), dim=-1).numpy()
    mean = f0.mean(0) / np.linalg.norm(f0.mean(0))
    noise = r.normal(0, 1, (N_CLS, embed))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    txt_np = (mean + TXT_SPREAD * noise).astype(np.float32)
    lab_np = np.array([i % N_CLS for i in range(N_IMG)], np.int64)
    r.shuffle(lab_np)

    # float64 loss and gradients.
    x = torch.from_numpy(x_np.astype(np.float64))
    ctx = torch.from_numpy(ctx_np.astype(np.float64)).requires_grad_(True)
    m_t = torch.from_numpy(mask)
    txt = torch.from_numpy(txt_np.astype(np.float64))
    labels = torch.from_numpy(lab_np)
    xp = (x + ctx * m_t).detach().requires_grad_(True)
    f = model(xp)
    logits = SCALE * F.normalize(f, dim=-1) @ F.normalize(txt, dim=-1).T
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grad_x = xp.grad.detach().numpy()
    grad = (grad_x.sum(0) * mask)        # d loss / d ctx = sum_n d x'_n, masked
    # The same through autograd of ctx * mask (checks the line above).
    l2, _ = loss_of(model, x, ctx, m_t, txt, labels)
    g2 = torch.autograd.grad(l2, ctx)[0].numpy()
    if np.abs(g2 - grad).max() > 1e-12 * max(np.abs(grad).max(), 1e-30):
        sys.exit("%s: masked gradient disagrees with autograd of ctx * mask" % name)

    # For information: float32 torch against float64.
    m32 = copy.deepcopy(model).float()
    c32 = torch.from_numpy(ctx_np).requires_grad_(True)
    l32, _ = loss_of(m32, torch.from_numpy(x_np), c32, m_t.float(), torch.from_numpy(txt_np),
                     labels)
    g32 = torch.autograd.grad(l32, c32)[0].numpy()
    d_g32 = gen_image.absmax_rel(g32, grad)

    # Attention map of image 0 with the prompt (the paper's rule).
    amap, G = attention_map(model, kind, (x + ctx.detach() * m_t)[:1], probe)
    tensors["ref.attnmap"] = amap.astype(np.float32)

    for k, v in model.state_dict().items():
        if gen_image.is_large(k, tuple(v.shape)):
            continue
        a = v.detach().numpy()
        tensors["visual.%s" % k] = a.astype(np.float32) if a.dtype == np.float64 else a
    for k, v in pieces(ctx_np, b).items():
        tensors["input.%s" % k] = np.ascontiguousarray(v)
    tensors["input.txt"] = txt_np
    tensors["input.labels"] = lab_np
    tensors["ref.loss"] = np.array(loss.item(), np.float32)
    tensors["ref.logits"] = logits.detach().numpy().astype(np.float32)
    for k, v in pieces(grad.astype(np.float32), b).items():
        tensors["ref.grad.%s" % k] = np.ascontiguousarray(v)
    case = dict(name=name, variant=variant, border=b, scale=SCALE, N=N_IMG, K=N_CLS,
                attn_probe=list(probe), attn_grid=G)
    meta.update(rec.metadata())
    meta["case"] = json.dumps(case)
    meta["image_config"] = json.dumps(cfg)
    meta["image_input"] = json.dumps([x_name, in_shape, rng_in["lo"], rng_in["hi"]])
    meta["fp32_vs_fp64"] = "grad %.2e (relative to absmax)" % d_g32
    meta["reference"] = "open_clip TimmModel + timm %s, float64" % gen_image.timm.__version__
    path = os.path.join(out, "vp_ref_%s.safetensors" % name)
    refcommon.save_safetensors(path, tensors, meta)
    print("%-8s %-28s S %d b %d  loss %.4f  |grad| max %.3e (hole %.1e)  fp32 vs fp64 grad "
          "%.1e" % (name, timm_name, size, b, loss.item(), np.abs(grad).max(),
                    np.abs(grad * (1 - mask)).max(), d_g32))
    print("    %s %d bytes" % (path, os.path.getsize(path)))


def write_pt(path, S, b, with_border, hole_values, seed):
    """A visual prompt laid out as the paper's torch.save file."""
    r = np.random.default_rng(seed)
    full = (0.02 * r.normal(0, 1, (3, S, S)) * mask_of(S, b)).astype(np.float32)
    for (c, i, j), v in hole_values:
        full[c, i, j] = v
    meta = {"coop_version": "v0.1.1", "prompt_type": "vis", "model_name": "MobileCLIP2-S0",
            "pretrained": "dfndr2b"}
    if with_border:
        meta["border_size"] = b
    torch.save({"ctx": torch.from_numpy(full), "meta": meta}, path)
    return full


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)

    for n, v, b, probe in CASES:
        run_case(n, v, b, probe, out)

    # Paper-style .pt prompts and their pieces.
    b8 = write_pt(os.path.join(out, "vp_paper_b8.pt"), 64, 8, True, [], SEED + 1)
    nob = write_pt(os.path.join(out, "vp_paper_nob.pt"), 32, 5, False,
                   [((0, 16, 16), 0.5), ((2, 10, 20), -0.25)], SEED + 2)
    tensors = {}
    for tag, full, b in (("pt_b8", b8, 8), ("pt_nob", nob, 5)):
        for k, v in pieces(full, b).items():
            tensors["%s.%s" % (tag, k)] = np.ascontiguousarray(v)
    path = os.path.join(out, "vp_pt_pieces.safetensors")
    refcommon.save_safetensors(path, tensors, {"source": "tests/reference/gen_vp.py"})
    for p in (path, os.path.join(out, "vp_paper_b8.pt"), os.path.join(out, "vp_paper_nob.pt")):
        print("%-60s %d bytes" % (p, os.path.getsize(p)))


if __name__ == "__main__":
    main()
