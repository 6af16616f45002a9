#!/usr/bin/env python3
"""Joins `loom bench --json` and `torch_ops.py --json` outputs into one Markdown table.

    python Benchmarks/compare.py loom.json torch.json [--title "quiet machine"]

Ratio = Loom rate / PyTorch rate (> 1 means Loom is faster).
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loom")
    ap.add_argument("torch")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    loom = {r["name"]: r for r in json.load(open(args.loom))}
    torch = {r["name"]: r for r in json.load(open(args.torch))}
    if args.title:
        print(f"#### {args.title}\n")
    print("| op | Loom ms | Loom rate | PyTorch ms | PyTorch rate | Loom / PyTorch | in-process baseline |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in loom.items():
        rate = r["work"] / r["seconds"] / 1e9
        base = ""
        if r.get("baselineRate"):
            base = f"{r['baselineName']} {r['baselineRate']:.2f} ({100 * rate / r['baselineRate']:.0f}%)"
        t = torch.get(name)
        if t:
            trate = t["work"] / t["seconds"] / 1e9
            print(f"| {name} | {r['seconds'] * 1e3:.3f} | {rate:.2f} {r['unit']} | {t['seconds'] * 1e3:.3f} | {trate:.2f} | {rate / trate:.2f}x | {base} |")
        else:
            print(f"| {name} | {r['seconds'] * 1e3:.3f} | {rate:.2f} {r['unit']} | - | - | - | {base} |")


if __name__ == "__main__":
    main()
