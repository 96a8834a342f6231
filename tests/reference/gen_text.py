"""gen_text.py - reference fixtures for the text tower (tests/test_text.c).

Builds the real open_clip TextTransformer exactly as CustomTextCLIP does
(open_clip.model._build_text_tower with the text_cfg of a MobileCLIP2 model
config), redraws its weights (arch-spec section 12; large matrices as
detweights recipes, see detweights.py), runs it on a few id sequences and
stores inputs, activations, embeddings and one input gradient.

Regenerate the committed fixtures (about 1.1 MB in all):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_text.py --out tests/fixtures

The full-size MobileCLIP2-S0 text tower (12 layers, full vocabulary, every
activation row; about 10 MB, never committed) for `make check-reference`:

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_text.py \
        --full-s0 --out tests/reference/out

Fixture layout (safetensors, one file per config):
  metadata    cfg.{vocab,context,width,heads,layers,embed,causal}, cfg.model
              (the open_clip config the text_cfg came from), detweights
              recipes + seed; text_e2e also "texts" (JSON list of strings).
  text.*      every 1-D parameter under its open_clip name (F16; the values
              are fp16-exact), plus logit_scale (0-d): with the recipes
              expanded this is a loadable checkpoint.
  input.ids   I64 [B, 77] token ids.
  input.r     F32 [B, E] weights of the gradient probe L = sum(r * embeds).
  ref.pool    I64 [B] pooled position = first argmax of the ids.
  ref.rows    I64 [R] flat rows (b * 77 + t) at which [*, W] activations are
              stored (a subset, to keep fixtures small; all rows with --full-s0).
  ref.x0      [R, W] token embedding + positional (input of block 0).
  ref.block.K [R, W] output of block K (0-based).
  ref.ln_final [R, W]; ref.pooled [B, W]; ref.proj [B, E] (= encode_text);
  ref.embeds  [B, E] L2-normalised proj.
  ref.grad_x0 [R, W] dL/d(token embeddings), L = sum(r * embeds).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon  # noqa: E402
from detweights import Recipes, uniform_std  # noqa: E402

SEED = 20240601
CONTEXT = 77

# name, source open_clip model config, overrides of its text_cfg, batch
CONFIGS = [
    ("text_w512", "MobileCLIP2-S0", dict(layers=2, vocab_size=1000)),
    ("text_w768", "MobileCLIP2-S3", dict(layers=2, vocab_size=1000)),
    ("text_w512_causal", "MobileCLIP2-B", dict(layers=2, vocab_size=1000)),
]
# A narrow tower with the full vocabulary for the end-to-end `mclip embed`
# test: its ids come from the real tokenizer.
E2E = ("text_e2e", "MobileCLIP2-S0", dict(layers=2, width=64, heads=1), 32)
E2E_TEXTS = ["a photo of a dog.", "Hello, World! 123", "x",
             "a photo of a <end_of_text> cat", "CoOp learns 16 context vectors"]


def linear_std(name, shape):
    """Std of a 2-D parameter (arch-spec section 12)."""
    if name.endswith("token_embedding.weight"):
        return 0.02
    if name.endswith("positional_embedding"):
        return 0.01
    if name.endswith("text_projection"):
        return 1.0 / math.sqrt(shape[0])
    std = 1.0 / math.sqrt(shape[1])
    if "out_proj" in name or "c_proj" in name:
        std *= 0.5  # residual output projections
    return std


def build(torch, open_clip, model_name, overrides, embed_dim=None):
    cfg = open_clip.get_model_config(model_name)
    text_cfg = dict(cfg["text_cfg"])
    text_cfg.update(overrides)
    E = embed_dim or cfg["embed_dim"]
    tower = open_clip.model._build_text_tower(E, text_cfg)
    tower.eval()
    return tower, text_cfg, E


def redraw(torch, tower, recipes):
    """1-D params from refcommon.randomize, 2-D ones from recipes."""
    refcommon.randomize(tower, seed=SEED, fp16_round=True)
    sd = tower.state_dict()
    for name, t in sd.items():
        if t.ndim >= 2:
            lo, hi = uniform_std(linear_std(name, tuple(t.shape)))
            v = recipes.draw("text." + name, tuple(t.shape), lo, hi)
            sd[name] = torch.from_numpy(v)
    tower.load_state_dict(sd, strict=True)


def make_ids(rng, B, vocab):
    """Sequences covering the pooling cases; SOT/EOT are the two largest ids."""
    sot, eot = vocab - 2, vocab - 1
    ids = np.zeros((B, CONTEXT), dtype=np.int64)
    lengths = [8, 9, CONTEXT - 2, 21, 3, 40]
    for b in range(B):
        n = lengths[b % len(lengths)]
        toks = rng.integers(1, vocab - 2, size=n)
        seq = [sot] + list(toks) + [eot]
        if b % len(lengths) == 1:
            seq[4] = eot  # a literal end-of-text earlier: pooling takes this one
        ids[b, :len(seq)] = seq[:CONTEXT]
    return ids


def sample_rows(ids, pool, per_seq):
    """Flat rows to store: start, pooled position and neighbours, the end."""
    rows = []
    for b in range(ids.shape[0]):
        p = int(pool[b])
        want = [0, 1, p - 1, p, p + 1, CONTEXT - 1, (p + CONTEXT) // 2, 2]
        seen = []
        for t in want:
            if 0 <= t < CONTEXT and t not in seen:
                seen.append(t)
            if len(seen) == per_seq:
                break
        rows += [b * CONTEXT + t for t in sorted(seen)]
    return np.array(rows, dtype=np.int64)


def run(torch, tower, ids, r):
    """Real forward with hooks; returns activations and d L / d x0."""
    acts = {}
    hooks = []
    x0_leaf = {}

    def tok_hook(mod, inp, out):
        leaf = out.detach().clone().requires_grad_(True)
        x0_leaf["t"] = leaf
        return leaf

    hooks.append(tower.token_embedding.register_forward_hook(tok_hook))
    for k, blk in enumerate(tower.transformer.resblocks):
        hooks.append(blk.register_forward_hook(
            lambda m, i, o, k=k: acts.__setitem__("block.%d" % k, o.detach().clone())))
    hooks.append(tower.ln_final.register_forward_hook(
        lambda m, i, o: acts.__setitem__("ln_final", o.detach().clone())))
    hooks.append(tower.transformer.resblocks[0].register_forward_pre_hook(
        lambda m, i: acts.__setitem__("x0", i[0].detach().clone())))

    ids_t = torch.from_numpy(ids)
    proj = tower(ids_t)
    embeds = torch.nn.functional.normalize(proj, dim=-1)
    loss = (torch.from_numpy(r) * embeds).sum()
    loss.backward()
    for h in hooks:
        h.remove()

    pool = ids_t.argmax(dim=-1)
    acts["pooled"] = acts["ln_final"][torch.arange(ids.shape[0]), pool]
    # The pooled row times the projection must reproduce the tower output.
    check = acts["pooled"] @ tower.text_projection.detach()
    assert torch.allclose(check, proj.detach(), atol=1e-5), "pooling mismatch"
    acts["proj"] = proj.detach()
    acts["embeds"] = embeds.detach()
    acts["grad_x0"] = x0_leaf["t"].grad.detach().clone()
    return {k: v.numpy().astype(np.float32) for k, v in acts.items()}, pool.numpy()


def generate(torch, open_clip, out_dir, fname, model_name, overrides, B,
             embed_dim=None, per_seq=6, texts=None):
    recipes = Recipes(SEED)
    tower, text_cfg, E = build(torch, open_clip, model_name, overrides, embed_dim)
    redraw(torch, tower, recipes)
    vocab, W = text_cfg["vocab_size"], text_cfg["width"]
    causal = 0 if text_cfg.get("no_causal_mask", False) else 1

    rng = np.random.default_rng(SEED + len(fname))
    if texts is not None:
        tok = open_clip.get_tokenizer(model_name)
        ids = tok(texts).numpy().astype(np.int64)
        B = len(texts)
    else:
        ids = make_ids(rng, B, vocab)
    r = rng.standard_normal((B, E)).astype(np.float32)
    acts, pool = run(torch, tower, ids, r)
    rows = (np.arange(B * CONTEXT, dtype=np.int64) if per_seq is None
            else sample_rows(ids, pool, per_seq))

    out = {}
    for name, t in tower.state_dict().items():
        if t.ndim < 2:
            out["text." + name] = t.numpy().astype(np.float16)
    out["logit_scale"] = np.array(math.log(100.0), dtype=np.float32)
    out["input.ids"] = ids
    out["input.r"] = r
    out["ref.pool"] = pool.astype(np.int64)
    out["ref.rows"] = rows
    for name in ["x0"] + ["block.%d" % k for k in range(text_cfg["layers"])] + \
            ["ln_final", "grad_x0"]:
        out["ref." + name] = acts[name].reshape(B * CONTEXT, W)[rows]
    for name in ("pooled", "proj", "embeds"):
        out["ref." + name] = acts[name]

    meta = recipes.metadata()
    meta.update({"cfg.vocab": vocab, "cfg.context": CONTEXT, "cfg.width": W,
                 "cfg.heads": text_cfg["heads"], "cfg.layers": text_cfg["layers"],
                 "cfg.embed": E, "cfg.causal": causal, "cfg.model": model_name,
                 "text_causal": causal})
    if texts is not None:
        meta["texts"] = json.dumps(texts)
    path = os.path.join(out_dir, fname + ".safetensors")
    refcommon.save_safetensors(path, out, meta)
    stds = ", ".join("%s %.2f" % (k, acts[k].std()) for k in acts if k.startswith("block"))
    print("%s: %s W=%d layers=%d vocab=%d causal=%d B=%d rows=%d | %s | %d bytes"
          % (path, model_name, W, text_cfg["layers"], vocab, causal, B, len(rows), stds,
             os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--full-s0", action="store_true",
                    help="only the full-size MobileCLIP2-S0 text tower, all rows")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch, open_clip = refcommon.setup()
    torch.manual_seed(0)
    if args.full_s0:
        generate(torch, open_clip, args.out, "text_s0_full", "MobileCLIP2-S0", {}, 4,
                 per_seq=None)
        return
    for fname, model_name, overrides in CONFIGS:
        generate(torch, open_clip, args.out, fname, model_name, overrides, 4)
    fname, model_name, overrides, E = E2E
    generate(torch, open_clip, args.out, fname, model_name, overrides, 0, embed_dim=E,
             per_seq=2, texts=E2E_TEXTS)


if __name__ == "__main__":
    main()
