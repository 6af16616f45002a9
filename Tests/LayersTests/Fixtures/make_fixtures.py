"""Writes norms_fixtures.json: PyTorch reference values for Loom's normalization layers and losses.

Run from the repository root with a Python that has torch (any recent CPU build):
    python Tests/LayersTests/Fixtures/make_fixtures.py   (a venv with torch 2.13 CPU and safetensors)
The tests only read the JSON; torch is never needed to run them. Everything is computed in
float64 from seeded inputs. Each entry is {"shape": [...], "data": [...]} (row-major).
The L1 / L-infinity batch-norm references (Hoffer et al. 2018) are written with plain numpy,
an implementation independent of Loom's: mean, scale and normalized outputs per channel.
"""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
out = {}


def put(name, t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
    out[name] = {"shape": list(a.shape), "data": [float("%.15g" % v) for v in a.reshape(-1).tolist()]}


def param_values(shape, lo, hi):
    return torch.linspace(lo, hi, int(np.prod(shape))).reshape(shape)


def bn_case(prefix, module, xs, eval_x):
    """Trains on each x in xs (recording outputs), then evaluates eval_x."""
    if module.affine:
        with torch.no_grad():
            module.weight.copy_(param_values(module.weight.shape, 0.5, 1.5))
            module.bias.copy_(param_values(module.bias.shape, -0.3, 0.2))
        put(prefix + ".weight", module.weight)
        put(prefix + ".bias", module.bias)
    module.train()
    for i, x in enumerate(xs):
        x = x.clone().requires_grad_(True)
        y = module(x)
        put(f"{prefix}.x{i}", x)
        put(f"{prefix}.train{i}", y)
        if i == 0:
            cot = torch.randn(y.shape)
            (y * cot).sum().backward()
            put(prefix + ".cot", cot)
            put(prefix + ".grad_x", x.grad)
            if module.affine:
                put(prefix + ".grad_weight", module.weight.grad)
                put(prefix + ".grad_bias", module.bias.grad)
    put(prefix + ".running_mean", module.running_mean)
    put(prefix + ".running_var", module.running_var)
    put(prefix + ".num_batches_tracked", module.num_batches_tracked.double())
    module.eval()
    put(prefix + ".eval_x", eval_x)
    put(prefix + ".eval", module(eval_x))


# BatchNorm1d on [N, C]: two training steps, then eval.
bn_case("bn1d", torch.nn.BatchNorm1d(3), [torch.randn(6, 3) * 2 + 1, torch.randn(6, 3) - 0.5], torch.randn(4, 3))
# BatchNorm1d on [N, C, L].
bn_case("bn1d3", torch.nn.BatchNorm1d(3, momentum=0.3), [torch.randn(4, 3, 5)], torch.randn(2, 3, 5))
# BatchNorm2d: two steps, eval.
bn_case("bn2d", torch.nn.BatchNorm2d(2), [torch.randn(3, 2, 3, 3) * 3, torch.randn(3, 2, 3, 3) + 2], torch.randn(2, 2, 3, 3))
# Cumulative moving average (momentum=None), no affine.
bn_case("bncma", torch.nn.BatchNorm1d(2, momentum=None, affine=False), [torch.randn(5, 2), torch.randn(5, 2) * 4], torch.randn(3, 2))

# LayerNorm over the last two dims.
ln = torch.nn.LayerNorm([3, 4])
with torch.no_grad():
    ln.weight.copy_(param_values([3, 4], 0.5, 1.5))
    ln.bias.copy_(param_values([3, 4], -0.2, 0.3))
x = (torch.randn(2, 3, 4) * 2).requires_grad_(True)
y = ln(x)
cot = torch.randn(y.shape)
(y * cot).sum().backward()
for k, v in {"x": x, "weight": ln.weight, "bias": ln.bias, "out": y, "cot": cot, "grad_x": x.grad,
             "grad_weight": ln.weight.grad, "grad_bias": ln.bias.grad}.items():
    put("ln." + k, v)

# LocalResponseNorm: AlexNet-like constants on 4-D, and an even size with a large alpha on 3-D.
lrn = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
x = torch.randn(2, 7, 2, 3) * 10
put("lrn5.x", x)
put("lrn5.out", lrn(x))
lrn = torch.nn.LocalResponseNorm(4, alpha=0.5, beta=0.75, k=1.0)
x = torch.randn(2, 6, 3).requires_grad_(True)
y = lrn(x)
cot = torch.randn(y.shape)
(y * cot).sum().backward()
put("lrn4.x", x)
put("lrn4.out", y)
put("lrn4.cot", cot)
put("lrn4.grad_x", x.grad)

# Cross-entropy and NLL.
logits = torch.randn(6, 4) * 2
targets = torch.tensor([0, 3, 1, 2, 3, 1])
targets_ign = torch.tensor([0, -100, 1, 2, -100, 3])
weight = torch.tensor([0.5, 1.0, 2.0, 1.5])
put("ce.logits", logits)
put("ce.targets", targets.double())
put("ce.targets_ign", targets_ign.double())
put("ce.weight", weight)
put("ce.mean", F.cross_entropy(logits, targets))
put("ce.sum", F.cross_entropy(logits, targets, reduction="sum"))
put("ce.none", F.cross_entropy(logits, targets, reduction="none"))
put("ce.w_mean", F.cross_entropy(logits, targets, weight=weight))
put("ce.ign_mean", F.cross_entropy(logits, targets_ign, ignore_index=-100))
put("ce.ls_mean", F.cross_entropy(logits, targets, label_smoothing=0.1))
put("ce.all_mean", F.cross_entropy(logits, targets_ign, weight=weight, ignore_index=-100, label_smoothing=0.2))
put("ce.all_sum", F.cross_entropy(logits, targets_ign, weight=weight, ignore_index=-100, label_smoothing=0.2, reduction="sum"))
put("ce.all_none", F.cross_entropy(logits, targets_ign, weight=weight, ignore_index=-100, label_smoothing=0.2, reduction="none"))
put("ce.ign1_w_mean", F.cross_entropy(logits, targets, weight=weight, ignore_index=1))
lg = logits.clone().requires_grad_(True)
F.cross_entropy(lg, targets_ign, weight=weight, ignore_index=-100, label_smoothing=0.2).backward()
put("ce.all_grad", lg.grad)
logits3 = torch.randn(2, 4, 3)
targets3 = torch.tensor([[0, 2, 3], [1, 1, 0]])
put("ce3.logits", logits3)
put("ce3.targets", targets3.double())
put("ce3.mean", F.cross_entropy(logits3, targets3, weight=weight, label_smoothing=0.1))
put("ce3.none", F.cross_entropy(logits3, targets3, weight=weight, label_smoothing=0.1, reduction="none"))
logp = F.log_softmax(logits, dim=1)
put("nll.logp", logp)
put("nll.w_ign_mean", F.nll_loss(logp, targets_ign, weight=weight, ignore_index=-100))
put("nll.none", F.nll_loss(logp, targets, reduction="none"))
put("nll.sum", F.nll_loss(logp, targets, weight=weight, reduction="sum"))

# Regression losses.
a = torch.randn(3, 4) * 1.5
b = torch.randn(3, 4)
put("reg.a", a)
put("reg.b", b)
put("mse.mean", F.mse_loss(a, b))
put("mse.sum", F.mse_loss(a, b, reduction="sum"))
put("mse.none", F.mse_loss(a, b, reduction="none"))
put("sl1.b1_mean", F.smooth_l1_loss(a, b, beta=1.0))
put("sl1.b05_none", F.smooth_l1_loss(a, b, beta=0.5, reduction="none"))
put("sl1.b0_sum", F.smooth_l1_loss(a, b, beta=0.0, reduction="sum"))

# BCE with logits, including large logits.
x = torch.randn(4, 3) * 3
x[0, 0], x[1, 1], x[2, 2], x[3, 0] = 40.0, -40.0, 100.0, -100.0
t = torch.rand(4, 3)
t[0, 1], t[1, 2] = 0.0, 1.0
pw = torch.tensor([0.5, 2.0, 3.0])
w = torch.tensor([1.0, 0.25, 2.0])
put("bce.x", x)
put("bce.t", t)
put("bce.pw", pw)
put("bce.w", w)
put("bce.mean", F.binary_cross_entropy_with_logits(x, t))
put("bce.pw_mean", F.binary_cross_entropy_with_logits(x, t, pos_weight=pw))
put("bce.w_pw_none", F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction="none"))
put("bce.sum", F.binary_cross_entropy_with_logits(x, t, reduction="sum"))
xg = x.clone().requires_grad_(True)
F.binary_cross_entropy_with_logits(xg, t, pos_weight=pw).backward()
put("bce.pw_grad", xg.grad)

# L1 / L-infinity batch norm (numpy): x [20, 2], weight 1, bias 0, eps 1e-5.
rng = np.random.default_rng(3)
xn = rng.standard_normal((20, 2)) * np.array([1.0, 3.0]) + np.array([0.5, -2.0])
put("lp.x", xn)
mu = xn.mean(0)
dev = np.abs(xn - mu)
n = xn.shape[0]
C = 0.5 * (1 + math.sqrt(math.pi * math.log(4))) / math.sqrt(2 * math.log(n))
put("lp.mean", mu)
scales = {
    "l1": math.sqrt(math.pi / 2) * dev.mean(0),
    "linf1": C * np.sort(dev, 0)[::-1][:1].mean(0),
    "linf3": C * np.sort(dev, 0)[::-1][:3].mean(0),
    "linf": C * np.sort(dev, 0)[::-1][:10].mean(0),
}
for k, s in scales.items():
    put(f"lp.{k}.scale", s)
    put(f"lp.{k}.out", (xn - mu) / (s + 1e-5))
    put(f"lp.{k}.running_var", 0.9 * 1.0 + 0.1 * s * s)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norms_fixtures.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print(path, os.path.getsize(path), "bytes,", len(out), "entries")
