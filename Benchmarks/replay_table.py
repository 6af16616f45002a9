#!/usr/bin/env python3
"""Joins Loom's and Reverb's replay-benchmark JSONL into one Markdown table.

    python Benchmarks/replay_table.py LOOM.jsonl REVERB.jsonl [--title TEXT]
        [--label NAME] [--also LOOM2.jsonl --also-label NAME2]

Each input line is one measurement, e.g.
    {"system":"loom","payload":"f32x100","selector":"uniform","metric":"insert","items_per_s":12345.6}
ratio4 lines also carry "inserts_per_s" and "observed_ratio". Rows are joined on
(payload, selector, metric); repeats are reduced to their median. A row present on one
side only shows "—" on the other. Ratio = Loom items/s / Reverb items/s (> 1: Loom is
faster; the issue's target is >= 2 on every row). `--also` adds a second Loom run (e.g. the
other transport) as two more columns; `--label`/`--also-label` name the two.
"""
import argparse
import json
import statistics
import sys

METRIC_ORDER = ["insert", "sample_b1", "sample_b256", "ratio4"]
SELECTOR_ORDER = ["fifo", "lifo", "uniform", "prioritized", "maxheap", "minheap"]
PAYLOAD_ORDER = ["f32x100", "u8x84x84x4"]
DASH = "—"


def load(path):
    """{(payload, selector, metric): {"items_per_s": [...], "inserts_per_s": [...], ...}}"""
    rows = {}
    try:
        f = open(path)
    except OSError as e:
        sys.exit(f"replay_table: cannot read {path}: {e.strerror}")
    with f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                r = json.loads(line)
                key = (r["payload"], r["selector"], r["metric"])
                rate = float(r["items_per_s"])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"replay_table: {path}:{n}: not a benchmark row ({e}): {line[:120]}")
            acc = rows.setdefault(key, {})
            acc.setdefault("items_per_s", []).append(rate)
            for extra in ("inserts_per_s", "observed_ratio"):
                if extra in r:
                    acc.setdefault(extra, []).append(float(r[extra]))
    return {k: {name: statistics.median(vals) for name, vals in v.items()} | {"n": len(v["items_per_s"])}
            for k, v in rows.items()}


def order(key):
    def pos(seq, x):
        return (seq.index(x), "") if x in seq else (len(seq), x)
    payload, selector, metric = key
    return pos(PAYLOAD_ORDER, payload), pos(METRIC_ORDER, metric), pos(SELECTOR_ORDER, selector)


def fmt_rate(x):
    return DASH if x is None else f"{x:,.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return DASH
    return f"{a / b:.2f}x"


def ratio4_note(r):
    if r is None or "observed_ratio" not in r:
        return DASH
    ins = r.get("inserts_per_s")
    ins_text = f"{ins:,.0f} ins/s, " if ins is not None else ""
    return f"{ins_text}ratio {r['observed_ratio']:.3f}"


def table(loom, reverb, label="", also=None, also_label="second"):
    name = f"Loom {label}".strip()
    head = f"| payload | selector | metric | {name} items/s | Reverb items/s | {name}/Reverb | "
    rule = "|---|---|---|---:|---:|---:|"
    if also is not None:
        head += f"Loom {also_label} items/s | Loom {also_label}/Reverb | "
        rule += "---:|---:|"
    lines = [head + "ratio4: inserts/s, observed samples/insert |", rule + "---|"]
    keys = set(loom) | set(reverb) | (set(also) if also is not None else set())
    for key in sorted(keys, key=order):
        lo, re_ = loom.get(key), reverb.get(key)
        lr = lo["items_per_s"] if lo else None
        rr = re_["items_per_s"] if re_ else None
        payload, selector, metric = key
        extra = f"{name} {ratio4_note(lo)}; Reverb {ratio4_note(re_)}" if metric == "ratio4" else ""
        row = f"| {payload} | {selector} | {metric} | {fmt_rate(lr)} | {fmt_rate(rr)} | {fmt_ratio(lr, rr)} | "
        if also is not None:
            a = also.get(key)
            ar = a["items_per_s"] if a else None
            row += f"{fmt_rate(ar)} | {fmt_ratio(ar, rr)} | "
            if metric == "ratio4":
                extra += f"; Loom {also_label} {ratio4_note(a)}"
        lines.append(row + f"{extra} |")
    return lines


def below_target(loom, reverb):
    joined = set(loom) & set(reverb)
    below = [k for k in joined if reverb[k]["items_per_s"] > 0 and loom[k]["items_per_s"] / reverb[k]["items_per_s"] < 2]
    return len(below), len(joined)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("loom", help="Loom's JSONL (Benchmarks/replay_loom.sh)")
    ap.add_argument("reverb", help="Reverb's JSONL (Benchmarks/reverb_bench.py)")
    ap.add_argument("--title", default="", help="a heading printed above the table")
    ap.add_argument("--label", default="", help="names the first Loom run in the header (e.g. framed)")
    ap.add_argument("--also", help="a second Loom JSONL shown as two more columns")
    ap.add_argument("--also-label", default="second", help="names the --also run")
    args = ap.parse_args(argv)
    loom, reverb = load(args.loom), load(args.reverb)
    also = load(args.also) if args.also else None
    if args.title:
        print(f"#### {args.title}\n")
    print("\n".join(table(loom, reverb, args.label, also, args.also_label)))
    runs = [loom, reverb] + ([also] if also is not None else [])
    reps = sorted({v["n"] for r in runs for v in r.values()})
    print(f"\nMedians over {'/'.join(map(str, reps)) or '0'} repeat(s) per row; "
          "items/s = samples/s for sample and ratio4 rows; Loom/Reverb > 1 means Loom is faster.")
    n, joined = below_target(loom, reverb)
    text = f"Rows below the 2x target: {n} of {joined} joined"
    if also is not None:
        n2, joined2 = below_target(also, reverb)
        text += f" ({args.label or 'first'}); {n2} of {joined2} ({args.also_label})"
    print(text + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
