"""Writes the PyTorch-produced fixtures that TorchInteropTests reads (torch is not needed to run the tests).

Run from anywhere with a Python that has torch (2.13 CPU) and safetensors:
    python Tests/ModelsTests/Fixtures/make_fixtures.py   (a venv with torch 2.13 CPU and safetensors)

The PyTorch models are the ones in scripts/torch_interop.py (same layers and state-dict keys as
Loom's zoo). Files, about 1.35 MB in all:

- lenet5.safetensors (247 KB), resnet20.safetensors (1.09 MB): real checkpoints, exactly what
  `safetensors.torch.save_file(model.state_dict(), ...)` writes, float32 weights and int64
  `num_batches_tracked`, after torch.manual_seed(0) initialisation and 10 SGD steps (batch 32) in train
  mode on Fashion-MNIST training images (so BatchNorm running statistics are not the defaults).
- io.safetensors: the input batch "x" (the first 3 Fashion-MNIST test images, normalised,
  [3, 1, 28, 28] float32), the same images as raw pixel values 0...255 "x_raw" (large
  activations, so LocalResponseNorm's alpha and size change the logits well above the
  tolerance), and torch's eval-mode logits "logits.<model>" and "logits_raw.<model>" [3, 10]
  for lenet5, resnet20, alexnet-small and convnet-bn. Its metadata holds the torch version and, for each of
  the four models, torch's state_dict manifest "state_dict.<model>" (JSON list of
  [key, safetensors dtype, shape] in torch's order).

alexnet-small (1.0M parameters, 4 MB in float32) and convnet-bn (0.83M, 3.3 MB) are too large to
check in. Their weights are instead *synthetic*: a formula of (key index in sorted order, element
index) whose values have at most 17 significant bits, so torch (here) and the Swift test compute
bit-identical float32 weights; only their logits and manifests are stored. See synthetic_state_dict.
scripts/torch_interop.py checks those two models with real torch-written checkpoints.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts"))
from torch_interop import DATA_DIR, build, fashion_batch, read_idx, train_steps  # noqa: E402

CODES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL"}


def synthetic_value(index, key, shape):
    """The synthetic value of one state-dict entry; TorchInteropTests.syntheticValue mirrors it.

    h = ((e * 2654435761 + index * 40503 + 12345) mod 2^32) >> 16 for element e (row-major),
    u = h / 65536 in [0, 1). Then: num_batches_tracked = 3 (int64); running_var = 0.5 + u;
    running_mean = (u - 0.5) / 2; rank-1 weight (BN gamma) = 0.75 + u / 2; rank-1 bias = (u - 0.5) / 4;
    a weight of rank >= 2 = (u - 0.5) * 4 / 2^k with k the least integer such that 4^k >= fan_in
    (fan_in = product of shape[1:]), about a Kaiming-uniform bound. All exact in float32.
    """
    if key.endswith("num_batches_tracked"):
        return torch.tensor(3, dtype=torch.int64)
    n = 1
    for d in shape:
        n *= d
    e = torch.arange(n, dtype=torch.int64)
    h = ((e * 2654435761 + index * 40503 + 12345) & 0xFFFFFFFF) >> 16
    u = h.double() / 65536
    if key.endswith("running_var"):
        v = 0.5 + u
    elif key.endswith("running_mean"):
        v = (u - 0.5) / 2
    elif len(shape) == 1 and key.endswith("weight"):
        v = 0.75 + u / 2
    elif len(shape) == 1 and key.endswith("bias"):
        v = (u - 0.5) / 4
    else:
        fan_in = n // shape[0]
        k = 0
        while 4 ** k < fan_in:
            k += 1
        v = (u - 0.5) * 4 / 2 ** k
    out = v.float()
    assert torch.equal(out.double(), v), key  # exact in float32
    return out.reshape(shape)


def synthetic_state_dict(model):
    keys = sorted(model.state_dict().keys())
    return {k: synthetic_value(i, k, list(model.state_dict()[k].shape)) for i, k in enumerate(keys)}


def manifest(state):
    return json.dumps([[k, CODES[v.dtype], list(v.shape)] for k, v in state.items()], separators=(",", ":"))


def main():
    torch.set_num_threads(2)
    x, _ = fashion_batch("test", 0, 3)
    x_raw = read_idx(os.path.join(DATA_DIR, "t10k-images-idx3-ubyte.gz"))[:3].float().unsqueeze(1).contiguous()
    io = {"x": x, "x_raw": x_raw}
    meta = {"producer": "Tests/ModelsTests/Fixtures/make_fixtures.py", "torch_version": torch.__version__}
    for name in ["lenet5", "resnet20", "alexnet-small", "convnet-bn"]:
        torch.manual_seed(0)
        model = build(name)
        if name in ("lenet5", "resnet20"):
            train_steps(model, steps=10)
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_file(state, os.path.join(HERE, f"{name}.safetensors"),
                      metadata={"producer": "torch.save_file via make_fixtures.py", "torch_version": torch.__version__,
                                "model": name, "training": "seed 0, 10 SGD steps (lr 0.05, momentum 0.9, batch 32)"})
        else:
            model.load_state_dict(synthetic_state_dict(model), strict=True)
        model.eval()
        with torch.no_grad():
            logits = model(x)
            logits_raw = model(x_raw)
        io[f"logits.{name}"] = logits.contiguous()
        io[f"logits_raw.{name}"] = logits_raw.contiguous()
        meta[f"state_dict.{name}"] = manifest(model.state_dict())
        print(f"{name}: max |logit| {logits.abs().max().item():.4f}, argmax {logits.argmax(1).tolist()}; "
              f"raw input: max |logit| {logits_raw.abs().max().item():.4f}, argmax {logits_raw.argmax(1).tolist()}")
    save_file(io, os.path.join(HERE, "io.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
