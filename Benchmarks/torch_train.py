#!/usr/bin/env python3
"""PyTorch side of `loom train-bench`: steady-state training images/s on random inputs for
the same models (LeNet-5 and convnet-bn as defined in Sources/Models), SGD with momentum
0.9 and weight decay 5e-4, cross-entropy, median of timed windows.

    python Benchmarks/torch_train.py --model lenet5 --batch-size 64 --threads 2 [--busy]
"""
import argparse
import json
import subprocess
import time

import torch
import torch.nn as nn


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def convnet_bn():
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(
        *block(1, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet5", choices=["lenet5", "convnet-bn"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--busy", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = lenet5() if args.model == "lenet5" else convnet_bn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    busy = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) if args.busy else None

    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    try:
        for _ in range(args.warmup):
            step()
        rates = []
        for _ in range(args.windows):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates.append(args.steps * args.batch_size / (time.perf_counter() - t0))
    finally:
        if busy:
            busy.terminate()
    rates.sort()
    med = rates[len(rates) // 2]
    print(f"torch {torch.__version__} {args.model} batch {args.batch_size}, {args.threads} threads"
          f"{', busy core' if args.busy else ''}: {med:.0f} images/s (min {rates[0]:.0f}, max {rates[-1]:.0f})")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"framework": "torch", "model": args.model, "batch": args.batch_size, "threads": args.threads,
                                "busy": args.busy, "images_per_second": med}, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
