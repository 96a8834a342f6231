#!/usr/bin/python3
"""torch_towers.py - the bench_text / bench_image workloads in PyTorch.

Runs open_clip's MobileCLIP2-S0 towers (Debian torch 1.13 on the CPU, open_clip
and timm from $MCLIP_REFENV through tests/reference/refcommon.setup()) under
torch.no_grad() with torch.set_num_threads(T), loading the same random-weight
fp16 safetensors checkpoint the C programs load (bench_text --write-model):

  --tower text   open_clip TextTransformer (model.text) alone: load (read the
                 safetensors with numpy, fp16 -> f32, load_state_dict),
                 tokenize the 102 Flowers102 prompts "a photo of a {}." with
                 open_clip.get_tokenizer, embed them: text(ids) -> [102, 512]
  --tower image  open_clip TimmModel (model.visual) alone, its trunk fused with
                 timm.utils.reparameterize_model, eval: visual(x) for
                 x [N, 3, 256, 256], N = 1 and 32 (--batch), same pixels as
                 bench_image (sin(0.0137 i))
  --ref-out F    the whole model: writes text.ids, text.embed (the 102 prompts),
                 image.x [1, 3, 256, 256] and image.embed (fused trunk) to F
                 for the C programs' --ref check

Timing as bench/bench_util.h: one warm-up, then --reps runs; median and min in
ms.  Each result line also gives the process CPU time per run (all threads),
a check on a shared, loaded machine.  Peak memory is ru_maxrss of this process
(Python and torch included) after each workload.  Output lines have the same
columns as the C programs, for bench/compare_towers.sh.

Usage: MCLIP_REFENV=/work/refenv /usr/bin/python3 bench/torch_towers.py
       --model F --tower text|image [--threads T] [--reps N] [--batch N]...
       [--classnames FILE] | --model F --ref-out F
"""
import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import refcommon  # noqa: E402

import numpy as np  # noqa: E402

MODEL = "MobileCLIP2-S0"
PROMPT = "a photo of a {}."


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def banner(torch, args):
    print(f"# torch_towers.py --tower {args.tower}: open_clip {MODEL} in PyTorch")
    print(f"# cpu       {cpu_model()} ({os.cpu_count()} online)")
    print(f"# threads   {args.threads} (torch.get_num_threads() = {torch.get_num_threads()})")
    caps = [line.strip() for line in torch.__config__.show().splitlines()
            if "CPU capability" in line]
    print(f"# torch     {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}"
          + (f", {caps[0].lstrip('- ')}" if caps else ""))
    print(f"# env       OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    sys.stdout.flush()


def timed(fn, reps):
    """One warm-up, then reps runs: (median s, min s, median CPU s per run)."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def line(tower, what, med, mn, cpu=None, extra=""):
    c = f" cpu {cpu * 1e3:.1f}" if cpu is not None else ""
    print(f"{tower:<5} {what:<10} {med * 1e3:10.2f} {mn * 1e3:10.2f}{c} {extra}".rstrip())
    sys.stdout.flush()


def read_names(path):
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def state_dict_from(path, prefix, torch):
    """Tensors under prefix (prefix removed) as float32 torch tensors."""
    sd, _ = refcommon.load_safetensors(path)
    return {k[len(prefix):]: torch.from_numpy(v.astype(np.float32))
            for k, v in sd.items() if k.startswith(prefix)}


def pixels(n, size):
    i = np.arange(n * 3 * size * size, dtype=np.float32)
    return np.sin(np.float32(0.0137) * i).astype(np.float32).reshape(n, 3, size, size)


def build_text(torch, open_clip, path):
    cfg = open_clip.get_model_config(MODEL)
    text = open_clip.model._build_text_tower(cfg["embed_dim"], cfg["text_cfg"])
    text.load_state_dict(state_dict_from(path, "text.", torch), strict=True)
    return text.eval()


def build_visual(torch, open_clip, path):
    from timm.utils import reparameterize_model
    cfg = open_clip.get_model_config(MODEL)
    visual = open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    missing, unexpected = visual.load_state_dict(state_dict_from(path, "visual.", torch),
                                                 strict=False)
    # num_batches_tracked buffers are not stored in the checkpoint.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing[:5]} unexpected {unexpected[:5]}")
    visual.eval()
    visual.trunk = reparameterize_model(visual.trunk)
    return visual


def run_text(torch, open_clip, args):
    # Load (model construction is not timed: the C side builds no Python objects).
    t0 = time.perf_counter()
    text = build_text(torch, open_clip, args.model)
    print(f"# first text build + load {1e3 * (time.perf_counter() - t0):.1f} ms")
    cfg = open_clip.get_model_config(MODEL)
    loads = []
    for _ in range(args.loads):
        t0 = time.perf_counter()
        sd = state_dict_from(args.model, "text.", torch)
        text.load_state_dict(sd, strict=True)
        loads.append(time.perf_counter() - t0)
        del sd
    tok = open_clip.get_tokenizer(MODEL)
    prompts = [PROMPT.format(n) for n in read_names(args.classnames)]
    med, mn, cpu = timed(lambda: tok(prompts), args.reps)
    ids = tok(prompts)
    print(f"# prompts   {ids.shape[0]} x {ids.shape[1]} tokens (\"{prompts[0]}\"), "
          f"{cfg['text_cfg']['layers']} layers")
    line("text", "tokenize", med, mn, cpu)
    with torch.no_grad():
        med, mn, cpu = timed(lambda: text(ids), args.reps)
    line("text", "embed", med, mn, cpu, f"{ids.shape[0] / med:.1f} prompts/s")
    print(f"text  rss_mb     {rss_mb():10.1f}")
    line("text", "load_text", statistics.median(loads), min(loads))


def run_image(torch, open_clip, args):
    t0 = time.perf_counter()
    visual = build_visual(torch, open_clip, args.model)
    dt = time.perf_counter() - t0
    print(f"image load       {dt * 1e3:10.2f} {dt * 1e3:10.2f} (build + load + fuse)")
    size = open_clip.get_model_config(MODEL)["vision_cfg"]["image_size"]
    for n in args.batch:
        x = torch.from_numpy(pixels(n, size))
        with torch.no_grad():
            med, mn, cpu = timed(lambda: visual(x), args.reps)
        line("image", f"fwd {n:<4}", med, mn, cpu, f"{n / med:.2f} images/s")
        print(f"image rss_mb {n:<4} {rss_mb():10.1f}")
        sys.stdout.flush()


def write_ref(torch, open_clip, args):
    text = build_text(torch, open_clip, args.model)
    visual = build_visual(torch, open_clip, args.model)
    tok = open_clip.get_tokenizer(MODEL)
    ids = tok([PROMPT.format(n) for n in read_names(args.classnames)])
    size = open_clip.get_model_config(MODEL)["vision_cfg"]["image_size"]
    x = torch.from_numpy(pixels(1, size))
    with torch.no_grad():
        te = text(ids).numpy()
        ie = visual(x).numpy()
    refcommon.save_safetensors(args.ref_out, {
        "text.ids": ids.numpy().astype(np.int64), "text.embed": te.astype(np.float32),
        "image.x": x.numpy(), "image.embed": ie.astype(np.float32)},
        {"model": args.model, "note": "torch_towers.py reference (random weights)"})
    print(f"# wrote {args.ref_out}: text.embed {list(te.shape)}, image.embed {list(ie.shape)}, "
          f"|image.embed| max {float(np.abs(ie).max()):.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tower", choices=("text", "image"))
    ap.add_argument("--ref-out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--classnames", default=os.path.join(HERE, "..", "datasets", "classnames",
                                                         "flowers102_coop.txt"))
    args = ap.parse_args()
    if not args.batch:
        args.batch = [1, 32]
    if not args.tower and not args.ref_out:
        ap.error("give --tower or --ref-out")
    torch, open_clip = refcommon.setup()
    torch.set_num_threads(args.threads)
    if args.ref_out:
        write_ref(torch, open_clip, args)
        return
    banner(torch, args)
    (run_text if args.tower == "text" else run_image)(torch, open_clip, args)


if __name__ == "__main__":
    main()
