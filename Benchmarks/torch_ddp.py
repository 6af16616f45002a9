#!/usr/bin/env python3
"""PyTorch DDP (gloo backend) side of Benchmarks/ddp_compare.sh: data-parallel training
images/s of the same models as `loom ddp-bench` (random inputs, SGD momentum 0.9, one
thread per rank), at a given world size on this machine.

    python Benchmarks/torch_ddp.py --world 2 --model convnet-bn --batch-per-rank 64
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from torch_train import convnet_bn, lenet5


def worker(rank, args, out):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.world)
    torch.manual_seed(0)
    model = lenet5() if args.model == "lenet5" else convnet_bn()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(args.batch_per_rank, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch_per_rank,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    t = torch.tensor([time.perf_counter() - t0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if rank == 0:
        out.put(args.batch_per_rank * args.world * args.steps / t.item())
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--model", default="convnet-bn", choices=["lenet5", "convnet-bn"])
    ap.add_argument("--batch-per-rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, args, out)) for r in range(args.world)]
    for p in procs:
        p.start()
    rate = out.get()
    for p in procs:
        p.join()
    print(f"torch DDP gloo: ranks {args.world}  {args.model} batch/rank {args.batch_per_rank}  {rate:.1f} images/s")


if __name__ == "__main__":
    main()
