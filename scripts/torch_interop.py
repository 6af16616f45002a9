#!/usr/bin/env python3
"""Checks that checkpoints move both ways between PyTorch and Loom, using the `loom` binary.

For each model (default: lenet5, alexnet-small, convnet-bn, resnet20) it
  (a) torch -> Loom: builds the PyTorch equivalent of the zoo model (below), takes ten SGD
      steps in train mode so BatchNorm running statistics are not trivial, writes the state
      dict with safetensors.torch.save_file, runs `loom predict` on a batch of Fashion-MNIST
      test images and compares Loom's logits with torch's eval-mode logits;
  (b) Loom -> torch: runs `loom train --epochs 1 --train-limit 256 --test-limit 100`, loads
      the model part of its checkpoint.safetensors (keys prefixed "model.") into the torch
      model with load_state_dict(strict=True) after checking every key's dtype and shape,
      and compares torch's logits with `loom predict` on the same checkpoint.

A difference passes when max |loom - torch| <= 1e-4 * max(1, max |torch logits|): both sides
compute in float32 but sum in different orders (im2col + OpenBLAS vs oneDNN), which moves
logits by a few ulps of their magnitude, far below this bound; a layout or semantics bug
(a transposed weight, a wrong BN buffer, LRN constants) moves them by O(1).

Usage:
  swift build -c release --product loom
  /path/to/venv/bin/python scripts/torch_interop.py .build/release/loom [--models lenet5,resnet20]

Needs torch and safetensors (CPU wheels are enough). Exit status 1 if any check fails.
The module also defines `build(name)`, the PyTorch models with Loom's state-dict keys, which
Tests/ModelsTests/Fixtures/make_fixtures.py imports.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530  # Loom's Augmentation.fashionMNISTNormalize
TOLERANCE = 1e-4            # relative to max(1, max |logit|)
MODELS = ["lenet5", "alexnet-small", "convnet-bn", "resnet20"]


# ---------------------------------------------------------------- PyTorch equivalents of Loom's zoo
# Layer order and indices follow Sources/Models/*.swift exactly, so the state-dict keys are the same.

class LeNet5(nn.Module):
    """Sources/Models/LeNet.swift."""

    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class AlexNetSmall(nn.Module):
    """AlexNetSmall in Sources/Models/AlexNet.swift: LRN, overlapping pools, grouped conv2/4/5."""

    def __init__(self, in_channels=1, classes=10, dropout=0.5):
        super().__init__()

        def lrn():
            return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 128, 5, padding=2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(128, 192, 3, padding=1), nn.ReLU(),
            nn.Conv2d(192, 192, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(192, 128, 3, padding=1, groups=2), nn.ReLU(),
            nn.MaxPool2d(3, stride=2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(128 * 2 * 2, 512), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class ConvNetBN(nn.Module):
    """Sources/Models/ConvNetBN.swift (standard L2 batch norm)."""

    def __init__(self, in_channels=1, classes=10, dropout=0.5):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(*(block(in_channels, 32) + block(32, 32) + [nn.MaxPool2d(2)]
                                        + block(32, 64) + block(64, 64) + [nn.MaxPool2d(2)]))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Sources/Layers/Residual.swift (torchvision's names; option-B 1x1 conv + BN shortcut)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet20(nn.Module):
    """ResNet20 in Sources/Models/ConvNetBN.swift."""

    def __init__(self, in_channels=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)

        def stage(i, o, stride):
            return nn.Sequential(BasicBlock(i, o, stride), BasicBlock(o, o), BasicBlock(o, o))

        self.layer1 = stage(16, 16, 1)
        self.layer2 = stage(16, 32, 2)
        self.layer3 = stage(32, 64, 2)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(h.mean(dim=(2, 3)))


def build(name):
    """The PyTorch model equivalent to Loom's `Zoo.make(name)` (1x28x28 inputs, 10 classes)."""
    return {"lenet5": LeNet5, "alexnet-small": AlexNetSmall, "convnet-bn": ConvNetBN, "resnet20": ResNet20}[name]()


# ---------------------------------------------------------------- data

def read_idx(path):
    """Reads a gzip-compressed IDX file into a uint8 tensor."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def fashion_batch(split, start, count, data_dir=DATA_DIR):
    """Normalised images [count, 1, 28, 28] float32 and int64 labels; random data if the files are absent."""
    prefix = "train" if split == "train" else "t10k"
    images = os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz")
    labels = os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz")
    if not (os.path.exists(images) and os.path.exists(labels)):
        g = torch.Generator().manual_seed(1000 + start)
        return torch.randn(count, 1, 28, 28, generator=g), torch.randint(0, 10, (count,), generator=g)
    x = read_idx(images)[start:start + count].float().div(255).sub(MEAN).div(STD).unsqueeze(1).contiguous()
    y = read_idx(labels)[start:start + count].long()
    return x, y


def train_steps(model, steps=2, batch=32, lr=0.05, data_dir=DATA_DIR):
    """A few SGD steps in train mode on Fashion-MNIST training images, so BN running stats move."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for s in range(steps):
        x, y = fashion_batch("train", s * batch, batch, data_dir)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


# ---------------------------------------------------------------- the two-way check

def compare(loom_logits, torch_logits):
    """(max abs difference, max |torch logit|, passes, argmax agreement)."""
    diff = (loom_logits - torch_logits).abs().max().item()
    magnitude = torch_logits.abs().max().item()
    agree = (loom_logits.argmax(1) == torch_logits.argmax(1)).float().mean().item()
    return diff, magnitude, diff <= TOLERANCE * max(1.0, magnitude), agree


def loom_predict(loom, model, weights, inputs, outputs):
    subprocess.run([loom, "predict", "--model", model, "--weights", weights, "--input", inputs, "--output", outputs],
                   check=True, stdout=subprocess.DEVNULL)
    from safetensors.torch import load_file
    return load_file(outputs)["x"]


def torch_to_loom(loom, name, work, x, data_dir):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = build(name)
    train_steps(model, steps=10, data_dir=data_dir)
    weights = os.path.join(work, f"{name}.torch.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights,
              metadata={"producer": "torch", "torch_version": torch.__version__})
    with torch.no_grad():
        expected = model(x)
    got = loom_predict(loom, name, weights, os.path.join(work, "input.safetensors"), os.path.join(work, f"{name}.out1.safetensors"))
    return compare(got, expected)


def loom_to_torch(loom, name, work, x, data_dir, threads):
    from safetensors import safe_open
    run_dir = os.path.join(work, f"run-{name}")
    subprocess.run([loom, "train", "--model", name, "--epochs", "1", "--train-limit", "256", "--test-limit", "100",
                    "--threads", str(threads), "--data-dir", data_dir, "--output", run_dir],
                   check=True, stdout=subprocess.DEVNULL)
    checkpoint = os.path.join(run_dir, "checkpoint.safetensors")
    state = {}
    with safe_open(checkpoint, framework="pt") as f:
        for k in f.keys():
            if k.startswith("model."):
                state[k[len("model."):]] = f.get_tensor(k)
    model = build(name)
    reference = model.state_dict()
    problems = [f"{k}: loom {state[k].dtype} {list(state[k].shape)}, torch {v.dtype} {list(v.shape)}"
                for k, v in reference.items() if k in state and (state[k].dtype != v.dtype or state[k].shape != v.shape)]
    if problems:
        raise SystemExit(f"{name}: checkpoint dtypes/shapes differ from torch's state_dict:\n  " + "\n  ".join(problems))
    model.load_state_dict(state, strict=True)  # raises on missing or unexpected keys
    model.eval()
    with torch.no_grad():
        expected = model(x)
    got = loom_predict(loom, name, checkpoint, os.path.join(work, "input.safetensors"), os.path.join(work, f"{name}.out2.safetensors"))
    return compare(got, expected)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("loom", help="path to the built loom binary, e.g. .build/release/loom")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--images", type=int, default=16, help="test images to compare logits on")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", help="directory for the files written (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loom = os.path.abspath(args.loom)
    from safetensors.torch import save_file

    work = args.work or tempfile.mkdtemp(prefix="loom-torch-interop-")
    os.makedirs(work, exist_ok=True)
    x, _ = fashion_batch("test", 0, args.images, args.data_dir)
    save_file({"x": x}, os.path.join(work, "input.safetensors"))
    print(f"torch {torch.__version__}, loom {loom}, {args.images} test images, files in {work}")
    print(f"pass: max |loom - torch| <= {TOLERANCE:g} * max(1, max |torch logit|)")
    print(f"{'model':15}{'direction':16}{'max |diff|':>12}{'max |logit|':>13}{'diff/logit':>12}{'argmax':>8}  result")
    failed = False
    for name in args.models.split(","):
        for direction, check in [("torch -> loom", lambda: torch_to_loom(loom, name, work, x, args.data_dir)),
                                 ("loom -> torch", lambda: loom_to_torch(loom, name, work, x, args.data_dir, args.threads))]:
            diff, magnitude, ok, agree = check()
            failed |= not ok
            print(f"{name:15}{direction:16}{diff:12.3e}{magnitude:13.4f}{diff / max(magnitude, 1e-30):12.2e}{agree:8.0%}"
                  f"  {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
