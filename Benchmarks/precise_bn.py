"""PreciseBN check: does recomputing BatchNorm running statistics from full batches recover
the accuracy a micro-batched (small-BN-batch) run lost?

For each Loom run directory given (convnet-bn, L2 BatchNorm), loads its
checkpoint.safetensors into the PyTorch twin of convnet-bn (scripts/torch_interop.py),
evaluates it on the Fashion-MNIST test set as trained, then after resetting the running
statistics and re-estimating them (train mode, cumulative average) from training batches
of 128 (100 batches) and of 4 (3,200 batches).
    venv/bin/python Benchmarks/precise_bn.py runs/convnet-bn-plain-3ep runs/convnet-bn-combined-3ep
"""
import os
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import torch_interop as ti  # noqa: E402

torch.set_num_threads(1)


def load(run):
    model = ti.ConvNetBN()
    state = load_file(os.path.join(run, "checkpoint.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return model


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def recompute(model, xs, batches, batch_size):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    model.train()
    perm = torch.randperm(xs.shape[0], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for b in range(batches):
            model(xs[perm[b * batch_size:(b + 1) * batch_size]])


def main():
    xt, yt = ti.fashion_batch("test", 0, 10000)
    xs, _ = ti.fashion_batch("train", 0, 60000)
    for run in sys.argv[1:]:
        print(f"{run}: as trained {100 * accuracy(load(run), xt, yt):.2f}%")
        for batch_size, batches in [(128, 100), (4, 3200)]:
            model = load(run)
            recompute(model, xs, batches, batch_size)
            print(f"{run}: running stats from {batches} batches of {batch_size}: {100 * accuracy(model, xt, yt):.2f}%")


if __name__ == "__main__":
    main()
