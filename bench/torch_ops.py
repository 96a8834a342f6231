#!/usr/bin/python3
"""torch_ops.py - the bench_gemm and bench_conv cases in PyTorch, for comparison.

Runs Debian's torch (1.13) on the CPU under torch.no_grad() with
torch.set_num_threads(T):
  gemm  linear_fwd   F.linear(x [R,K], W [N,K], b [N])            (FLOPs 2RKN)
        linear_bwdx  dx.addmm_(dy [R,N], W [N,K]), i.e. dx += dy W  (the d-input GEMM)
  conv  F.conv2d(x [N,Cin,H,H], w [Cout,Cin/G,k,k], b, stride, pad, 1, G)
  convx torch.nn.grad.conv2d_input(x.shape, w, dy, stride, pad, 1, G): d x only
        (aten.convolution_backward with only the input mask set)
        for every shape printed by `bench_conv --list` (the single source of the
        shape table), batch 1 and 32.
Timing follows bench/bench_util.h: warm-up, then at least 5 runs and about
0.3 s (gemm: --reps runs), median and min in ms, GFLOP/s from the median.
Output lines have the same columns as the C programs, so bench/compare.sh can
join them.

Usage: /usr/bin/python3 bench/torch_ops.py --threads 2 --shapes shapes.txt [--rows 7854]
       [--only gemm|conv] [--batch N] [--pass fwd|bwdx|both] [--clock wall|cpu]
"""
import argparse
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def banner(threads):
    print("# torch_ops.py: the same cases in PyTorch")
    print(f"# cpu       {cpu_model()}")
    print(f"# threads   {threads} (torch.get_num_threads() = {torch.get_num_threads()})")
    caps = [line.strip() for line in torch.__config__.show().splitlines()
            if "CPU capability" in line]
    print(f"# torch     {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}"
          + (f", {caps[0].lstrip('- ')}" if caps else ""))
    print(f"# python    {platform.python_version()}")
    sys.stdout.flush()


# Wall clock, or with --clock cpu the calling thread's CPU time (robust on a
# shared machine; meaningful with one thread, as in bench_util.h).
CLOCK = time.perf_counter


def run_timed(fn, min_reps=5, max_reps=200, budget=0.3, warm=2):
    """Warm up, then repeat fn at least min_reps times and about budget seconds."""
    for _ in range(warm):
        fn()
    t0 = CLOCK()
    fn()
    once = CLOCK() - t0
    reps = int(budget / once) if once > 0 else max_reps
    reps = max(min_reps, min(max_reps, reps))
    times = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times), min(times)


def bench_gemm(rows, reps):
    gen = torch.Generator().manual_seed(0)
    for K, N in ((512, 512), (512, 2048), (2048, 512)):
        x = torch.rand(rows, K, generator=gen) * 2 - 1
        w = torch.rand(N, K, generator=gen) * 2 - 1
        b = torch.rand(N, generator=gen) * 2 - 1
        dy = torch.rand(rows, N, generator=gen) * 2 - 1
        dx = torch.zeros(rows, K)
        flops = 2.0 * rows * K * N
        cases = (("linear_fwd", lambda: F.linear(x, w, b)),
                 ("linear_bwdx", lambda: dx.addmm_(dy, w)))
        for name, fn in cases:
            med, mn = run_timed(fn, min_reps=reps, max_reps=reps, budget=0, warm=1)
            print(f"gemm  {name:<12} {K:4d}x{N:<5d} {med * 1e3:9.3f} {mn * 1e3:9.3f} "
                  f"{flops / med * 1e-9:8.1f}")
            sys.stdout.flush()


def read_shapes(path):
    shapes = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or p[0] != "shape":
                continue
            name = p[1]
            cin, h, cout, k, s, pad, g, bias, uses = map(int, p[2:11])
            shapes.append(dict(name=name, cin=cin, h=h, cout=cout, k=k, s=s, pad=pad, g=g,
                               bias=bias, uses=uses, form=p[11]))
    if not shapes:
        sys.exit(f"torch_ops.py: no 'shape' lines in {path} (make it with bench_conv --list)")
    return shapes


def bench_conv(shapes, batches, passes):
    gen = torch.Generator().manual_seed(0)
    for n in batches:
        total = [0.0, 0.0]
        for c in shapes:
            x = torch.rand(n, c["cin"], c["h"], c["h"], generator=gen) * 2 - 1
            w = torch.rand(c["cout"], c["cin"] // c["g"], c["k"], c["k"], generator=gen) * 2 - 1
            b = torch.rand(c["cout"], generator=gen) * 2 - 1 if c["bias"] else None
            ho = (c["h"] + 2 * c["pad"] - c["k"]) // c["s"] + 1
            dy = torch.rand(n, c["cout"], ho, ho, generator=gen) * 2 - 1
            macs = n * c["cout"] * ho * ho * (c["cin"] // c["g"]) * c["k"] * c["k"]
            cases = (("conv", 0, lambda: F.conv2d(x, w, b, c["s"], c["pad"], 1, c["g"])),
                     ("convx", 1, lambda: torch.nn.grad.conv2d_input(
                         x.shape, w, dy, c["s"], c["pad"], 1, c["g"])))
            for kind, i, fn in cases:
                if not passes & (1 << i):
                    continue
                med, mn = run_timed(fn)
                total[i] += c["uses"] * med
                print(f"{kind:<5} {c['name']:<20} {n:3d} {'torch':<9} {med * 1e3:9.3f} "
                      f"{mn * 1e3:9.3f} {2 * macs / med * 1e-9:8.1f} {c['uses']:3d} {c['form']}")
                sys.stdout.flush()
        if passes & 1:
            print(f"total {'fused_S0_convs':<20} {n:3d} {'-':<9} {total[0] * 1e3:9.3f}")
        if passes & 2:
            print(f"totalx {'fused_S0_convs':<19} {n:3d} {'-':<9} {total[1] * 1e3:9.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", help="output of bench_conv --list (conv cases)")
    ap.add_argument("--rows", type=int, default=7854)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the thread's CPU time (use with --threads 1)")
    ap.add_argument("--reps", type=int, default=5, help="gemm repetitions after warm-up")
    ap.add_argument("--only", choices=("gemm", "conv"), help="run one part")
    ap.add_argument("--batch", type=int, action="append", help="conv batch (default 1 and 32)")
    ap.add_argument("--pass", dest="passes", choices=("fwd", "bwdx", "both"), default="both",
                    help="conv passes: forward, d input, or both")
    args = ap.parse_args()

    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.thread_time
    torch.set_num_threads(args.threads)
    banner(args.threads)
    print(f"# clock     {'thread CPU time' if args.clock == 'cpu' else 'wall (perf_counter)'}")
    with torch.no_grad():
        if args.only != "conv":
            print(f"# rows R = {args.rows}, reps {args.reps} after 1 warm-up")
            bench_gemm(args.rows, args.reps)
        if args.only != "gemm":
            if not args.shapes:
                sys.exit("torch_ops.py: --shapes FILE is needed for the conv cases "
                         "(FILE = output of bench_conv --list)")
            passes = {"fwd": 1, "bwdx": 2, "both": 3}[args.passes]
            bench_conv(read_shapes(args.shapes), args.batch or [1, 32], passes)


if __name__ == "__main__":
    main()
