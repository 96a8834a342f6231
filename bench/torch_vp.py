#!/usr/bin/python3
"""torch_vp.py - bench_vp's visual-prompt training step in PyTorch.

open_clip's MobileCLIP2-S0 image tower (TimmModel, the trunk fused with
timm.utils.reparameterize_model, eval mode, frozen) on Debian's torch 1.13
(open_clip and timm from $MCLIP_REFENV through tests/reference/refcommon.setup()),
float32, torch.set_num_threads(T).  Weights: the random-weight checkpoint the
C program loads (--model F, written by `bench_vp --write-model F`), or
refcommon.randomize(model, seed) with --random.  One step, as the paper's
CoOpVisPrompt trains (paper-protocol section 10):

    x'   = x + prompt * mask         prompt [3, 256, 256] (the paper's parameter)
    f    = visual(x')                [N, 512]
    loss = CE(100 * normalize(f) @ txt^T, labels)
    loss.backward(); AdamW(lr 3e-4, wd 0.01).step()

with bench_vp's deterministic inputs (x = sin(0.0137 i), prompt =
0.02 sin(0.031 i) * mask, txt = normalize(cos(0.017 i)), labels n % K), so
the first loss matches the C program's when both load the same checkpoint.
Timing: one warm-up step, then --reps steps; median and min in ms, and the
process CPU time per step (all threads).

Usage: MCLIP_REFENV=/work/refenv /usr/bin/python3 bench/torch_vp.py
       --model F [--threads 2] [--batch 32] [--reps 3] [--border 32] [--classes 102]
"""
import argparse
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import refcommon  # noqa: E402

import numpy as np  # noqa: E402

MODEL = "MobileCLIP2-S0"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def build_visual(torch, open_clip, args):
    from timm.utils import reparameterize_model
    cfg = open_clip.get_model_config(MODEL)
    visual = open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    if args.random:
        refcommon.randomize(visual, seed=1)
    else:
        sd, _ = refcommon.load_safetensors(args.model)
        sd = {k[len("visual."):]: torch.from_numpy(v.astype(np.float32))
              for k, v in sd.items() if k.startswith("visual.")}
        missing, unexpected = visual.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{args.model}: missing {missing[:5]} unexpected {unexpected[:5]}")
    visual.eval()
    visual.trunk = reparameterize_model(visual.trunk)
    for p in visual.parameters():
        p.requires_grad_(False)
    return visual, cfg["vision_cfg"]["image_size"], cfg["embed_dim"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--random", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--border", type=int, default=32)
    ap.add_argument("--classes", type=int, default=102)
    args = ap.parse_args()
    if not args.model and not args.random:
        ap.error("--model F or --random")
    torch, open_clip = refcommon.setup()
    F = torch.nn.functional
    torch.set_num_threads(args.threads)
    visual, S, E = build_visual(torch, open_clip, args)
    print("# torch_vp.py: visual-prompt training step, open_clip MobileCLIP2-S0 fused, "
          "random weights")
    print(f"# cpu       {cpu_model()} ({os.cpu_count()} online)")
    print(f"# threads   {args.threads} (torch.get_num_threads() = {torch.get_num_threads()})")
    print(f"# torch     {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}")

    # bench_vp's inputs.
    N, K, b = args.batch, args.classes, args.border
    x = torch.from_numpy(np.sin(np.float32(0.0137) * np.arange(N * 3 * S * S, dtype=np.float32))
                         .astype(np.float32).reshape(N, 3, S, S))
    mask = torch.zeros(3, S, S)
    mask[:, :b, :] = 1
    mask[:, S - b:, :] = 1
    mask[:, :, :b] = 1
    mask[:, :, S - b:] = 1
    full = 0.02 * np.sin(np.float32(0.031) * np.arange(3 * S * S, dtype=np.float32))
    prompt = (torch.from_numpy(full.astype(np.float32).reshape(3, S, S)) * mask)
    prompt.requires_grad_(True)
    txt = torch.from_numpy(np.cos(np.float32(0.017) * np.arange(K * E, dtype=np.float32))
                           .astype(np.float32).reshape(K, E))
    txt = F.normalize(txt, dim=-1)
    labels = torch.arange(N) % K
    opt = torch.optim.AdamW([prompt], lr=3e-4, weight_decay=0.01)
    print(f"# step      N {N}, {S}x{S}, border {b} (prompt [3, {S}, {S}]), K {K}, scale 100, "
          "AdamW")

    def step():
        opt.zero_grad()
        f = visual(x + prompt * mask)
        loss = F.cross_entropy(100.0 * F.normalize(f, dim=-1) @ txt.T, labels)
        loss.backward()
        opt.step()
        return loss.item()

    loss = step()
    gmax = float(prompt.grad.abs().max())
    print(f"# first     loss {loss:.6f}, max |d loss / d prompt| {gmax:.6e}")
    sys.stdout.flush()
    wall, cpu = [], []
    for _ in range(args.reps):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(wall)
    print(f"vp step {N:<4} {med * 1e3:10.1f} {min(wall) * 1e3:10.1f} cpu "
          f"{statistics.median(cpu) * 1e3:.1f} {N / med:8.2f} img/s")


if __name__ == "__main__":
    main()
