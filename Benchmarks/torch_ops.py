#!/usr/bin/env python3
"""PyTorch CPU side of `loom bench`: the same rows, timed the same way (median of
--repeats runs after one warm-up), written as JSON for Benchmarks/compare.py.

Run with 2 threads for a fair comparison on this 2-core machine:
    python Benchmarks/torch_ops.py --threads 2 --json torch.json [--busy]
"""
import argparse
import json
import subprocess
import time

import torch


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def conv_rows(rows, repeats, want):
    # name, N, C, H, W, O, k, stride, pad, groups  (must match Sources/loom/BenchConv.swift)
    layers = [
        ("lenet conv1 b64 1x28x28 -> 6 k5 p2", 64, 1, 28, 28, 6, 5, 1, 2, 1),
        ("lenet conv2 b64 6x14x14 -> 16 k5", 64, 6, 14, 14, 16, 5, 1, 0, 1),
        ("convnet-bn conv2 b128 32x28x28 -> 32 k3 p1", 128, 32, 28, 28, 32, 3, 1, 1, 1),
        ("deepconvnet b32 16x28x28 -> 16 k3 p1", 32, 16, 28, 28, 16, 3, 1, 1, 1),
        ("alexnet conv1 b8 3x224x224 -> 96 k11 s4 p2", 8, 3, 224, 224, 96, 11, 4, 2, 1),
        ("alexnet conv2 b8 96x27x27 -> 256 k5 p2 g2", 8, 96, 27, 27, 256, 5, 1, 2, 2),
        ("alexnet conv3 b8 256x13x13 -> 384 k3 p1", 8, 256, 13, 13, 384, 3, 1, 1, 1),
    ]
    for (name, n, c, h, w, o, k, s, p, g) in layers:
        x = torch.randn(n, c, h, w)
        wt = torch.randn(o, c // g, k, k)
        b = torch.randn(o)
        out = torch.nn.functional.conv2d(x, wt, b, stride=s, padding=p, groups=g)
        oh, ow = out.shape[2], out.shape[3]
        flops = 2.0 * n * o * oh * ow * (c // g) * k * k
        fname = "conv2d fwd " + name
        if want(fname):
            t = median_seconds(lambda: torch.nn.functional.conv2d(x, wt, b, stride=s, padding=p, groups=g), repeats)
            rows.append({"name": fname, "seconds": t, "work": flops, "unit": "GFLOP/s"})
        bname = "conv2d fwd+bwd " + name
        if want(bname):
            xr = x.clone().requires_grad_(True)
            wr = wt.clone().requires_grad_(True)
            br = b.clone().requires_grad_(True)
            gy = torch.randn_like(out)

            def step():
                y = torch.nn.functional.conv2d(xr, wr, br, stride=s, padding=p, groups=g)
                y.backward(gy)
                xr.grad = None
                wr.grad = None
                br.grad = None

            t = median_seconds(step, repeats)
            rows.append({"name": bname, "seconds": t, "work": 3 * flops, "unit": "GFLOP/s"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json")
    ap.add_argument("--filter")
    ap.add_argument("--busy", action="store_true", help="run a competing busy process on one core")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    want = (lambda name: args.filter in name) if args.filter else (lambda name: True)
    busy = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) if args.busy else None
    rows = []
    try:
        torch.manual_seed(0)
        for n in (256, 1024, 2048):
            name = f"matmul {n}x{n}x{n} f32"
            if not want(name):
                continue
            a, b = torch.randn(n, n), torch.randn(n, n)
            reps = max(3, args.repeats // 2) if n >= 2048 else args.repeats
            t = median_seconds(lambda: torch.mm(a, b), reps)
            rows.append({"name": name, "seconds": t, "work": 2.0 * n ** 3, "unit": "GFLOP/s"})
        conv_rows(rows, args.repeats, want)
        n = 1 << 22
        x, y = torch.randn(n), torch.randn(n)
        m, row = x.reshape(2048, 2048), torch.randn(2048)
        mt = m.t()
        b1, b2 = 2 * n * 4, 3 * n * 4
        streaming = [
            ("relu 4M f32", b1, lambda: torch.relu(x)),
            ("neg 4M f32", b1, lambda: torch.neg(x)),
            ("exp 4M f32", b1, lambda: torch.exp(x)),
            ("tanh 4M f32", b1, lambda: torch.tanh(x)),
            ("add 4M f32", b2, lambda: x + y),
            ("mul 4M f32", b2, lambda: x * y),
            ("add broadcast [2048,2048]+[2048] f32", b1, lambda: m + row),
            ("sum 4M f32 (all)", n * 4, lambda: x.sum()),
            ("sum [2048,2048] dim 1 f32", n * 4, lambda: m.sum(dim=1)),
            ("sum [2048,2048] dim 0 f32", n * 4, lambda: m.sum(dim=0)),
            ("max [2048,2048] dim 0 f32 (values, indices)", n * 4, lambda: m.max(dim=0)),
            ("transpose copy [2048,2048] f32", b1, lambda: mt.contiguous()),
        ]
        for name, nbytes, fn in streaming:
            if want(name):
                rows.append({"name": name, "seconds": median_seconds(fn, args.repeats), "work": nbytes, "unit": "GB/s"})
        # Sort with indices (must match sortRows in Sources/loom/Bench.swift).
        for name, shape in (("sort 1M f32 (one line)", (1 << 20,)), ("sort [4096,256] f32 dim 1", (4096, 256))):
            if want(name):
                xs = torch.randn(*shape)
                t = median_seconds(lambda: torch.sort(xs, dim=-1), args.repeats)
                rows.append({"name": name, "seconds": t, "work": xs.numel(), "unit": "Gelem/s"})
    finally:
        if busy:
            busy.terminate()
    for r in rows:
        print(f"{r['name']:<48} {r['seconds'] * 1e3:9.3f} ms  {r['work'] / r['seconds'] / 1e9:8.2f} {r['unit']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    main()
