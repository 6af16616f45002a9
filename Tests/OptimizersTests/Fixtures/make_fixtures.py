"""Generates the PyTorch fixtures in Tests/OptimizersTests/TorchFixtureTests.swift.

Run with torch 2.13.0+cpu:  python Tests/OptimizersTests/Fixtures/make_fixtures.py
It prints Swift literals; paste them into TorchFixtureTests.swift. The tests never need torch.

Setup: a 2x3 float64 parameter p0, and for step k = 0, 1, 2, 3 the fixed gradient
g_k[i] = sin(0.7 * (i + 1) + 1.3 * k) * (k + 1) / 2   (i = row-major element index),
assigned to p.grad before optimizer.step(). Records the parameter after every step.
"""
import math

import torch

torch.set_default_dtype(torch.float64)

P0 = [0.5, -1.25, 2.0, 0.0, 0.75, -0.3]
STEPS = 4


def grad(k):
    return torch.tensor([math.sin(0.7 * (i + 1) + 1.3 * k) * (k + 1) / 2 for i in range(6)]).reshape(2, 3)


def run(make, clip=None, scheduler=None):
    p = torch.nn.Parameter(torch.tensor(P0).reshape(2, 3))
    opt = make([p])
    sched = scheduler(opt) if scheduler else None
    out = []
    for k in range(STEPS):
        p.grad = grad(k)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        if sched:
            sched.step()
        out.append(p.detach().reshape(-1).tolist())
    return out


def literal(name, rows):
    body = ",\n".join("        [" + ", ".join(repr(v) for v in r) + "]" for r in rows)
    print(f"    static let {name}: [[Double]] = [\n{body},\n    ]")


cases = {
    "sgdPlain": lambda: run(lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgdMomentumDecay": lambda: run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=5e-2)),
    "sgdNesterov": lambda: run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-2)),
    "adam": lambda: run(lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    "adamDecay": lambda: run(lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamW": lambda: run(lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "sgdMomentumClipped": lambda: run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), clip=0.5),
    "adamWOneCycle": lambda: run(
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=STEPS + 1, pct_start=0.4, cycle_momentum=False),
    ),
}

print(f"    // torch {torch.__version__}, Tests/OptimizersTests/Fixtures/make_fixtures.py")
print(f"    static let p0: [Double] = {P0!r}")
for name, f in cases.items():
    literal(name, f())

# Learning-rate schedules (values used for steps 0..n-1).
def lrs(make_sched, n, lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    s = make_sched(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out

one_cycle = lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=20, pct_start=0.3, cycle_momentum=False), 20, 0.1)
print("    static let oneCycleLR: [Double] = [" + ", ".join(repr(v) for v in one_cycle) + "]")
step_lr = lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10, 0.2)
print("    static let stepLR: [Double] = [" + ", ".join(repr(v) for v in step_lr) + "]")
