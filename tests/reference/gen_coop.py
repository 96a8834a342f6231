"""gen_coop.py - reference fixture for CoOp prompt learning (tests/test_coop.c).

Builds the real open_clip TextTransformer of MobileCLIP2-S0 reduced to 2
layers and a 1000-token vocabulary (weights exactly as gen_text.py draws
them: 1-D parameters from refcommon.randomize, matrices as detweights
recipes), then for several prompt configurations computes in float32:

  * the text features of the prompt rows, built from the tower's own
    modules: token_embedding, the splice of the context vectors, the
    positional embedding, transformer (with the tower's attn_mask),
    ln_final, the pooled row, @ text_projection;
  * the classification loss (CoOp: CE of scale * img^ txt^T, batch mean)
    or the multitask loss (1 - lambda) L_ret + lambda L_cls with captions
    sharing the context (arch-spec section 10, paper-protocol section 6);
  * d loss / d ctx by autograd.

The splice of the template form is checked against the unmodified tower:
a forward hook on token_embedding replaces rows 1..M by ctx and the
tower's own forward (argmax pooling) must give the same features.

Sequence forms (coop/prompt.h): "template" = "X X ... X name." ids with
ctx at positions 1..M, pooled at argmax(ids); "paper" = bare-name ids,
x = [emb(SOT), ctx, emb(ids[1:])][:77], pooled at min(eot0 + M, 76) (eot)
or min(eot0 + R, 76) (legacy, R rows of the call).  Class positions end /
middle / front follow CoOp's PromptLearner.

Also writes coop_optim.safetensors (gen_optim below: PyTorch AdamW and SGD
steps, Dassl's warm-up + cosine schedule) for tests/test_optim.c, and
coop_prompt_legacy.pt (a v0.1.0-era paper prompt file) for
tests/test_coop_train.c.

Regenerate (about 420 kB + 3 kB; --only prompt|optim writes one):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_coop.py \
        --out tests/fixtures

Layout (safetensors tests/fixtures/coop_ref.safetensors):
  metadata      detweights recipes + seed, cfg.* of the tower, "cases" (JSON
                list of {name, form, pool, pos, csc, multitask, M}),
                "scale", "lambda"
  text.*, logit_scale     the tower's 1-D parameters (F16) as in gen_text.py
  input.img     F32 [N, E] image features (raw; both sides normalise)
  input.labels  I64 [N]
  input.img_cap F32 [B, E] image features of the caption pairs
  per case c:
    input.c.ctx       F32 [M, W] or [K, M, W] (CSC); unified M = 16 cases
                      use the shared input.ctx16 instead
    input.c.ids       I64 [K, 77] tokenized rows (what the form tokenizes)
    input.c.name_len  I64 [K] BPE tokens of the bare names
    input.c.cap_ids, input.c.cap_len   the same for captions (multitask)
    ref.c.pool        I64 [K] (and ref.c.cap_pool [B])
    ref.c.loss        F32 []; ref.c.logits F32 [N, K]; ref.c.grad = d loss / d ctx
    ref.c.l_cls, ref.c.l_ret, ref.c.S [B, B]          (multitask)
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon  # noqa: E402
import gen_text  # noqa: E402
from detweights import Recipes  # noqa: E402

SEED = 20240717
CONTEXT = 77
VOCAB = 1000
SOT, EOT = VOCAB - 2, VOCAB - 1
SHARED_M = 16                     # unified M = 16 cases share one ctx (input.ctx16)
X_ID, PERIOD_ID = 343, 269        # "x</w>" and ".</w>" in the real vocabulary
N_IMG, N_CLS, N_CAP = 8, 6, 4
SCALE = 100.0                     # exp(logit_scale) of the tower's checkpoint = ln 100
LAMBDA = 0.3                      # the paper's multitask weight

# name, form, pool, pos, csc, multitask, M
CASES = [
    ("tpl_end", "template", "argmax", "end", 0, 0, 16),
    ("paper_eot", "paper", "eot", "end", 0, 0, 16),
    ("paper_legacy", "paper", "legacy", "end", 0, 0, 16),
    ("tpl_middle_csc", "template", "argmax", "middle", 1, 0, 4),
    ("paper_front", "paper", "eot", "front", 0, 0, 5),
    ("multi_tpl", "template", "argmax", "end", 0, 1, 16),
    ("multi_paper_legacy", "paper", "legacy", "end", 0, 1, 16),
]


def name_tokens(rng, R, long_row):
    """Random BPE-like names: 1..4 tokens, one row of 64 tokens (truncation)."""
    out = []
    for r in range(R):
        n = 64 if r == long_row else 1 + (r * 3) % 4
        out.append([int(v) for v in rng.integers(1, VOCAB - 3, size=n)])
    return out


def tokenize(tokens):
    """open_clip's packing: SOT + tokens + EOT, cut to 77 with EOT last."""
    seq = [SOT] + tokens[:CONTEXT - 2] + [EOT]
    row = np.zeros(CONTEXT, dtype=np.int64)
    row[:len(seq)] = seq
    return row


def rows_for(form, M, names):
    """ids0 of each row: template "X*M name ." or the bare name."""
    if form == "template":
        return np.stack([tokenize([X_ID] * M + n + [PERIOD_ID]) for n in names])
    return np.stack([tokenize(n) for n in names])


def splice(torch, emb, ctx, form, pos, M, name_len, csc):
    """x [R, 77, W] per coop/prompt.h (CoOp's PromptLearner for the template)."""
    R = emb.shape[0]
    rows = []
    for r in range(R):
        c = ctx[r] if csc else ctx
        body = emb[r, 1 + M:] if form == "template" else emb[r, 1:]
        n = min(int(name_len[r]), body.shape[0])
        if pos == "end":
            parts = [emb[r, :1], c, body]
        elif pos == "front":
            parts = [emb[r, :1], body[:n], c, body[n:]]
        else:
            h = M // 2
            parts = [emb[r, :1], c[:h], body[:n], c[h:], body[n:]]
        rows.append(torch.cat(parts, 0)[:CONTEXT])
    return torch.stack(rows)


def pool_index(ids0, rule, M):
    R = ids0.shape[0]
    e0 = ids0.argmax(axis=1)
    shift = {"argmax": 0, "eot": M, "legacy": R}[rule]
    return np.minimum(e0 + shift, CONTEXT - 1)


def encode(torch, tower, ids0, ctx, form, rule, pos, M, name_len, csc):
    emb = tower.token_embedding(torch.from_numpy(ids0))
    x = splice(torch, emb, ctx, form, pos, M, name_len, csc)
    x = x + tower.positional_embedding
    x = tower.transformer(x, attn_mask=tower.attn_mask)
    x = tower.ln_final(x)
    pool = pool_index(ids0, rule, M)
    return x[torch.arange(x.shape[0]), torch.from_numpy(pool)] @ tower.text_projection, pool


def check_template_splice(torch, tower, ids0, ctx, M):
    """The manual pipeline equals the tower's own forward with ctx hooked in."""
    def hook(mod, inp, out):
        out = out.clone()
        out[:, 1:1 + M] = ctx
        return out
    h = tower.token_embedding.register_forward_hook(hook)
    with torch.no_grad():
        ref = tower(torch.from_numpy(ids0))
    h.remove()
    with torch.no_grad():
        got, _ = encode(torch, tower, ids0, ctx, "template", "argmax", "end", M,
                        np.zeros(len(ids0), dtype=np.int64), 0)
    err = (got - ref).abs().max().item()
    assert err < 1e-5, "manual template pipeline differs from tower(ids): %g" % err
    return err


def losses(torch, F, feat, img, labels, cap=None, img_cap=None):
    img_n = F.normalize(img, dim=-1)
    logits = SCALE * img_n @ F.normalize(feat, dim=-1).t()
    l_cls = F.cross_entropy(logits, labels)
    if cap is None:
        return l_cls, logits, None, None, None
    S = SCALE * F.normalize(img_cap, dim=-1) @ F.normalize(cap, dim=-1).t()
    y = torch.arange(S.shape[0])
    l_ret = 0.5 * (F.cross_entropy(S, y) + F.cross_entropy(S.t(), y))
    return (1 - LAMBDA) * l_ret + LAMBDA * l_cls, logits, S, l_cls, l_ret


def run_case(torch, F, tower, case, rng, img, labels, img_cap, out, dtype=None):
    name, form, rule, pos, csc, multi, M = case
    W = tower.positional_embedding.shape[1]
    names = name_tokens(rng, N_CLS, long_row=2 if form == "paper" else 3)
    ids0 = rows_for(form, M, names)
    name_len = np.array([len(n) for n in names], dtype=np.int64)
    shape = (N_CLS, M, W) if csc else (M, W)
    shared = not csc and M == SHARED_M
    ctx0 = out["input.ctx%d" % M] if shared else \
        (0.02 * rng.standard_normal(shape)).astype(np.float32)
    cap_names = name_tokens(rng, N_CAP, long_row=-1) if multi else None
    cap_ids = rows_for(form, M, cap_names) if multi else None
    cap_len = np.array([len(n) for n in cap_names], dtype=np.int64) if multi else None

    def forward(tw, cast):
        ctx = torch.tensor(ctx0, dtype=cast, requires_grad=True)
        feat, pool = encode(torch, tw, ids0, ctx, form, rule, pos, M, name_len, csc)
        cap = cap_pool = None
        if multi:
            cap, cap_pool = encode(torch, tw, cap_ids, ctx, form, rule, pos, M, cap_len, 0)
        res = losses(torch, F, feat, img.to(cast), labels, cap,
                     img_cap.to(cast) if multi else None)
        res[0].backward()
        return ctx, pool, cap_pool, res

    ctx, pool, cap_pool, (loss, logits, S, l_cls, l_ret) = forward(tower, torch.float32)
    # float64 rerun: how far float32 itself is from exact (for the C tolerances).
    ctx64, _, _, res64 = forward(tower.double(), torch.float64)
    tower.float()
    g32, g64 = ctx.grad.numpy(), ctx64.grad.numpy()
    gerr = np.abs(g32 - g64).max() / np.abs(g64).max()

    p = "input.%s." % name
    if not shared:
        out[p + "ctx"] = ctx0
    out[p + "ids"] = ids0
    out[p + "name_len"] = name_len
    r = "ref.%s." % name
    out[r + "pool"] = pool.astype(np.int64)
    out[r + "loss"] = np.array(loss.item(), dtype=np.float32)
    out[r + "logits"] = logits.detach().numpy().astype(np.float32)
    out[r + "grad"] = g32.astype(np.float32)
    if multi:
        out[p + "cap_ids"] = cap_ids
        out[p + "cap_len"] = cap_len
        out[r + "cap_pool"] = cap_pool.astype(np.int64)
        out[r + "S"] = S.detach().numpy().astype(np.float32)
        out[r + "l_cls"] = np.array(l_cls.item(), dtype=np.float32)
        out[r + "l_ret"] = np.array(l_ret.item(), dtype=np.float32)
    print("%-20s form %-8s pool %-6s pos %-6s csc %d multi %d M %2d | loss %.5f | pools %s | "
          "|grad| max %.3g | fp32 vs fp64 grad %.2g of absmax"
          % (name, form, rule, pos, csc, multi, M, loss.item(), list(pool),
             np.abs(g32).max(), gerr))
    return ids0


def gen_optim(torch, out_dir):
    """coop_optim.safetensors: PyTorch AdamW / SGD steps and Dassl's schedule.

    input.p0 [P], input.grads [S, P]; ref.adamw [S, P] and ref.sgd [S, P]
    hold the parameters after each step (AdamW lr 1e-2, betas 0.9/0.999,
    eps 1e-8, wd 0.01; SGD lr 0.1, momentum 0.9, wd 5e-4; both with the lr
    multiplied by 0.5 from step 4 on, to exercise a changing lr); ref.lr [E]
    the learning rate of each epoch under CosineAnnealingLR(T_max = E)
    wrapped in Dassl's ConstantWarmupScheduler (1 epoch at 1e-5, base 2e-3).
    """
    P, S, E = 37, 6, 10
    rng = np.random.default_rng(SEED + 1)
    p0 = rng.standard_normal(P).astype(np.float32)
    grads = rng.standard_normal((S, P)).astype(np.float32)
    grads[2] *= 1e-3                      # tiny gradients: eps matters
    out = {"input.p0": p0, "input.grads": grads}
    for name, make in (("adamw", lambda q: torch.optim.AdamW([q], lr=1e-2, betas=(0.9, 0.999),
                                                              eps=1e-8, weight_decay=0.01)),
                       ("sgd", lambda q: torch.optim.SGD([q], lr=0.1, momentum=0.9,
                                                         weight_decay=5e-4))):
        q = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        opt = make(q)
        hist = []
        for s in range(S):
            if s == 3:
                for gr in opt.param_groups:
                    gr["lr"] *= 0.5
            q.grad = torch.from_numpy(grads[s].copy())
            opt.step()
            hist.append(q.detach().numpy().copy())
        out["ref." + name] = np.stack(hist)

    # Dassl's ConstantWarmupScheduler around CosineAnnealingLR, one step per epoch.
    from torch.optim.lr_scheduler import CosineAnnealingLR, _LRScheduler

    class ConstantWarmup(_LRScheduler):
        def __init__(self, optimizer, successor, warmup_epoch, cons_lr):
            self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
            super().__init__(optimizer, -1)

        def get_lr(self):
            if self.last_epoch >= self.warmup_epoch:
                return self.successor.get_last_lr()
            return [self.cons_lr for _ in self.base_lrs]

        def step(self, epoch=None):
            if self.last_epoch >= self.warmup_epoch:
                self.successor.step(epoch)
                self._last_lr = self.successor.get_last_lr()
            else:
                super().step(epoch)

    q = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([q], lr=2e-3, momentum=0.9)
    sched = ConstantWarmup(opt, CosineAnnealingLR(opt, T_max=E), 1, 1e-5)
    lrs = []
    for e in range(E):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()          # no gradient: a no-op that keeps PyTorch's call order
        sched.step()
    out["ref.lr"] = np.array(lrs, dtype=np.float64)
    path = os.path.join(out_dir, "coop_optim.safetensors")
    refcommon.save_safetensors(path, out, {"epochs": E})
    print("%s: %d bytes; lr per epoch %s" % (path, os.path.getsize(path),
                                            " ".join("%.4g" % v for v in lrs)))


def gen_legacy_pt(torch, out_dir):
    """coop_prompt_legacy.pt: a v0.1.0-era paper prompt (no coop_version, so
    legacy pooling), torch.save of {"ctx": Tensor[4, 512], "meta": {...}}
    with the keys of paper-protocol section 13 (n_ctx 4 keeps it small)."""
    import hashlib
    g = torch.Generator().manual_seed(5)
    names = [" pink primrose", "hard-leaved pocket orchid", "pink-yellow dahlia?",
             "blackberry lily,"]
    sha1 = hashlib.sha1(json.dumps(names, ensure_ascii=False).encode("utf-8")).hexdigest()
    meta = {"model_name": "MobileCLIP2-S0", "pretrained": "dfndr2b", "n_ctx": 4,
            "classnames": names, "classnames_sha1": sha1, "k_per_class": 8}
    obj = {"ctx": torch.randn(4, 512, generator=g) * 0.02, "meta": meta}
    path = os.path.join(out_dir, "coop_prompt_legacy.pt")
    torch.save(obj, path)
    print("%s: %d bytes (classnames_sha1 %s)" % (path, os.path.getsize(path), sha1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--only", choices=["prompt", "optim"], help="write one of the fixtures")
    args = ap.parse_args()
    torch, open_clip = refcommon.setup()
    import torch.nn.functional as F
    torch.manual_seed(0)
    if args.only != "prompt":
        gen_optim(torch, args.out)
        gen_legacy_pt(torch, args.out)
    if args.only == "optim":
        return

    recipes = Recipes(SEED)
    tower, text_cfg, E = gen_text.build(torch, open_clip, "MobileCLIP2-S0",
                                        dict(layers=2, vocab_size=VOCAB))
    gen_text.redraw(torch, tower, recipes)
    W = text_cfg["width"]

    rng = np.random.default_rng(SEED)
    img = torch.from_numpy(rng.standard_normal((N_IMG, E)).astype(np.float32))
    labels = torch.from_numpy(np.array([0, 1, 2, 3, 4, 5, 2, 4], dtype=np.int64))
    img_cap = torch.from_numpy(rng.standard_normal((N_CAP, E)).astype(np.float32))

    out = {}
    for name, t in tower.state_dict().items():
        if t.ndim < 2:
            out["text." + name] = t.numpy().astype(np.float16)
    out["logit_scale"] = np.array(math.log(SCALE), dtype=np.float32)
    out["input.img"] = img.numpy()
    out["input.labels"] = labels.numpy()
    out["input.img_cap"] = img_cap.numpy()
    out["input.ctx%d" % SHARED_M] = (0.02 * rng.standard_normal((SHARED_M, W))).astype(np.float32)
    for case in CASES:
        ids0 = run_case(torch, F, tower, case, rng, img, labels, img_cap, out)
        if case[0] == "tpl_end":
            ctx = torch.from_numpy(out["input.ctx%d" % SHARED_M])
            err = check_template_splice(torch, tower, ids0, ctx, case[6])
            print("  template splice == tower(ids) with hooked embeddings: max |d| %.2g" % err)

    meta = recipes.metadata()
    meta.update({"cfg.vocab": VOCAB, "cfg.context": CONTEXT, "cfg.width": W,
                 "cfg.heads": text_cfg["heads"], "cfg.layers": text_cfg["layers"],
                 "cfg.embed": E, "cfg.causal": 0, "text_causal": 0,
                 "text_heads": text_cfg["heads"], "cfg.model": "MobileCLIP2-S0",
                 "scale": repr(SCALE), "lambda": repr(LAMBDA),
                 "cases": json.dumps([dict(name=c[0], form=c[1], pool=c[2], pos=c[3],
                                           csc=c[4], multitask=c[5], M=c[6]) for c in CASES])})
    path = os.path.join(args.out, "coop_ref.safetensors")
    refcommon.save_safetensors(path, out, meta)
    print("%s: %d bytes" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
