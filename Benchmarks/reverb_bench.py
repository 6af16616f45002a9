#!/usr/bin/env python3
"""DeepMind Reverb's side of the replay-service throughput comparison (issue 6).

    python Benchmarks/reverb_bench.py [--out OUT.jsonl] [--seconds S] [--repeats R]
                                      [--rows PATTERN ...] [--warmup W]

Needs `pip install 'dm-reverb[tensorflow]==0.14.0'` (Python 3.11; TensorFlow 2.15). The server
runs in its own process (this script re-run with `--serve`), the client here talks to it
over loopback (localhost:PORT). One JSON object per row and repeat goes to stdout and to
--out, e.g.

    {"system":"reverb","payload":"f32x100","selector":"uniform","metric":"insert","items_per_s":12345.6}

Rows, for payloads f32x100 (float32[100] per step) and u8x84x84x4 (uint8 84x84x4 per step),
each with a table per sampler selector (fifo, lifo, uniform, prioritized with exponent 0.8,
maxheap, minheap; remover fifo; MinSize(1); max size 1e6 / 20000):

  insert       items/s through `client.trajectory_writer`: one step per item (append, then
               create_item over that step), at most --in-flight items unconfirmed (bounded
               with `flush(block_until_num_items=...)`), a full flush at the end, which is
               inside the timed span; the count is checked against the server's counter.
  sample_b1    samples/s at batch 1, one sample at a time to Python: by default the client's
               streaming sampler (the one `client.sample` uses) with 256 samples in flight
               instead of `client.sample`'s 1; it is ~10x faster here than iterating an
               unbatched TrajectoryDataset, whose per-element tf.data overhead dominates
               (--b1-api dataset / client measures those instead).
  sample_b256  samples/s (items) with `reverb.TrajectoryDataset(...).batch(256)`,
               max_in_flight_samples_per_worker 512 (2x the batch, Reverb's rule of thumb),
               num_workers_per_iterator 2 (one per core), no prefetch; the same settings for
               every selector (Reverb asks for 1 worker when FIFO order must hold; 1 vs 2
               workers made no clear difference for fifo in a tuning run).
  ratio4       SampleToInsertRatio(samples_per_insert=4, min_size_to_sample=100,
               error_buffer=400), uniform sampler, one inserter and one sampler process
               (separate OS processes, both clients of the server process); rates from the
               server's rate-limiter counters over S seconds after sampling has started
               plus --warmup; items_per_s is samples/s, plus inserts_per_s and
               observed_ratio. The inserter uses the writer as in `insert`; the sampler
               iterates the sample_b256 dataset (batch 256, 512 in flight, 2 workers).

Sampling rows are measured on a table pre-filled with --prefill-f32 / --prefill-frames
items (defaults 10000 and 2000, as on Loom's side). Step data: a pool of 64 distinct
pseudo-random steps, float32 values k/1000 and uniformly random frame bytes, so Reverb's
chunk compression does not see all-zero data; priorities uniform in (0, 1].

--rows takes fnmatch patterns over "payload/selector/metric" (ratio4's selector is
"uniform"); a pattern without "/" matches any one part, e.g. `--rows insert`,
`--rows 'f32x100/*/sample_*' ratio4`. Default: every row.
"""
import argparse
import fnmatch
import json
import os
import select
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PAYLOADS = {
    # name: (shape, numpy dtype name, max_size)
    "f32x100": ((100,), "float32", 1_000_000),
    "u8x84x84x4": ((84, 84, 4), "uint8", 20_000),
}
SELECTORS = ["fifo", "lifo", "uniform", "prioritized", "maxheap", "minheap"]
METRICS = ["insert", "sample_b1", "sample_b256"]
PRIORITY_EXPONENT = 0.8
RATIO_TABLE = "ratio4"


def log(msg):
    print(f"reverb_bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Pieces shared by the server, the benchmark and the ratio4 worker processes.

def step_pool(payload, count=64, seed=42):
    import numpy as np
    shape, dtype, _ = PAYLOADS[payload]
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        # Values k/1000, like Loom's side: not all-zero, not pure noise.
        return [(rng.integers(0, 1000, size=shape) / 1000).astype(np.float32) for _ in range(count)]
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(count)]


def priority_pool(count=4096, seed=7):
    import numpy as np
    rng = np.random.default_rng(seed)
    return [float(p) for p in 1.0 - rng.random(count)]  # in (0, 1]


def make_selector(reverb, name):
    return {
        "fifo": reverb.selectors.Fifo,
        "lifo": reverb.selectors.Lifo,
        "uniform": reverb.selectors.Uniform,
        "prioritized": lambda: reverb.selectors.Prioritized(PRIORITY_EXPONENT),
        "maxheap": reverb.selectors.MaxHeap,
        "minheap": reverb.selectors.MinHeap,
    }[name]()


def serve(cfg):
    """Server process: builds the tables, prints `PORT n`, serves until stdin closes."""
    import reverb
    import tensorflow as tf
    shape, dtype, max_size = PAYLOADS[cfg["payload"]]
    signature = {"x": tf.TensorSpec(shape, getattr(tf, dtype))}
    tables = []
    for sel in cfg["selectors"]:
        tables.append(reverb.Table(
            name=sel, sampler=make_selector(reverb, sel), remover=reverb.selectors.Fifo(),
            max_size=max_size, rate_limiter=reverb.rate_limiters.MinSize(1), signature=signature))
    if cfg["ratio"]:
        tables.append(reverb.Table(
            name=RATIO_TABLE, sampler=reverb.selectors.Uniform(), remover=reverb.selectors.Fifo(),
            max_size=max_size,
            rate_limiter=reverb.rate_limiters.SampleToInsertRatio(
                samples_per_insert=4, min_size_to_sample=100, error_buffer=400),
            signature=signature))
    server = reverb.Server(tables=tables, port=cfg.get("port") or None)
    print(f"PORT {server.port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    server.stop()


class ServerProcess:
    """A Reverb server in a child process (this file with --serve)."""

    def __init__(self, payload, selectors, ratio, port=0, timeout=120):
        cfg = json.dumps({"payload": payload, "selectors": selectors, "ratio": ratio, "port": port})
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", cfg],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"Reverb server process did not start (got {line!r})")
        self.port = int(line.split()[1])
        self.address = f"localhost:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


def counters(client, table):
    """(inserts, samples) completed, from the table's rate limiter on the server."""
    info = client.server_info(timeout=30)[table].rate_limiter_info
    return info.insert_stats.completed, info.sample_stats.completed


def dataset(reverb, address, table, in_flight, workers):
    return reverb.TrajectoryDataset.from_table_signature(
        server_address=address, table=table,
        max_in_flight_samples_per_worker=in_flight, num_workers_per_iterator=workers)


# ---------------------------------------------------------------------------------------
# Measurements.

class Writer:
    """One step per item through client.trajectory_writer, with bounded in-flight items."""

    def __init__(self, client, table, steps, prios, in_flight):
        self.w = client.trajectory_writer(num_keep_alive_refs=1)  # chunk length 1
        self.table, self.steps, self.prios, self.in_flight = table, steps, prios, in_flight
        self.i = 0

    def write(self, n):
        w, steps, prios, table = self.w, self.steps, self.prios, self.table
        ns, np_ = len(steps), len(prios)
        for _ in range(n):
            w.append({"x": steps[self.i % ns]})
            w.create_item(table, prios[self.i % np_], {"x": w.history["x"][-1]})
            self.i += 1
            if self.i % 16 == 0:
                w.flush(block_until_num_items=self.in_flight)

    def close(self):
        self.w.flush()
        self.w.close()


def measure_insert(client, table, steps, prios, seconds, in_flight):
    client.reset(table)
    ins0, _ = counters(client, table)
    writer = Writer(client, table, steps, prios, in_flight)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        writer.write(32)
    writer.close()  # full flush: every counted item is confirmed by the server
    dt = time.perf_counter() - t0
    ins1, _ = counters(client, table)
    if ins1 - ins0 != writer.i:
        raise RuntimeError(f"insert {table}: wrote {writer.i} items, server counted {ins1 - ins0}")
    return writer.i / dt


def prefill(client, table, steps, prios, count, in_flight):
    client.reset(table)
    writer = Writer(client, table, steps, prios, in_flight)
    writer.write(count)
    writer.close()
    size = client.server_info(timeout=30)[table].current_size
    if size != count:
        raise RuntimeError(f"prefill {table}: table holds {size} items, expected {count}")


def measure_sample(reverb, args, address, table, batch, seconds, warmup):
    if batch == 1:
        if args.b1_api == "sampler":
            return measure_sample_sampler(reverb, address, table, seconds, warmup, args.b1_in_flight)
        if args.b1_api == "client":
            return measure_sample_client(reverb, address, table, seconds, warmup)
        ds = dataset(reverb, address, table, args.b1_in_flight, args.b1_workers)
        if args.b1_prefetch:
            ds = ds.prefetch(args.b1_prefetch)
    else:
        ds = dataset(reverb, address, table, args.b256_in_flight, args.b256_workers)
        ds = ds.batch(batch, drop_remainder=True)
        if args.b256_prefetch:
            ds = ds.prefetch(args.b256_prefetch)
    it = iter(ds)
    t_w = time.perf_counter()
    while time.perf_counter() - t_w < warmup:
        next(it)
    n = 0
    t0 = time.perf_counter()
    while True:
        s = next(it)
        if time.perf_counter() - t0 >= seconds:
            break
        n += int(s.data["x"].shape[0]) if batch > 1 else 1
    dt = time.perf_counter() - t0
    del it
    return n / dt


def measure_sample_sampler(reverb, address, table, seconds, warmup, in_flight):
    """The client's streaming sampler with `in_flight` samples requested ahead.

    `reverb.Client.sample` builds this same sampler but always with one sample in flight;
    the pybind client it wraps (`Client._client`) takes the in-flight count as a parameter.
    """
    client = reverb.Client(address)
    sampler = client._client.NewSampler(table, 1 << 62, in_flight)
    t_w = time.perf_counter()
    while time.perf_counter() - t_w < warmup:
        sampler.GetNextTrajectory()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(16):
            sampler.GetNextTrajectory()  # numpy: key, probability, size, priority, times, x
        n += 16
    dt = time.perf_counter() - t0
    del sampler
    return n / dt


def measure_sample_client(reverb, address, table, seconds, warmup):
    """client.sample: public, but keeps one sample in flight."""
    client = reverb.Client(address)
    gen = client.sample(table, num_samples=1 << 62, emit_timesteps=False)
    t_w = time.perf_counter()
    while time.perf_counter() - t_w < warmup:
        next(gen)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(gen)
        n += 1
    dt = time.perf_counter() - t0
    gen.close()
    return n / dt


def spawn_worker(role, address, payload, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--ratio-worker", role, "--address", address,
           "--ratio-payload", payload, "--in-flight", str(args.in_flight),
           "--ratio-batch", str(args.ratio_batch), "--ratio-in-flight", str(args.ratio_in_flight),
           "--ratio-workers", str(args.ratio_workers)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_line(proc, expect, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == expect:
                return
            if not line:
                break
        elif proc.poll() is not None:
            break
    raise RuntimeError(f"ratio4 worker did not report {expect!r} (exit status {proc.poll()})")


def measure_ratio(client, address, payload, args):
    client.reset(RATIO_TABLE)
    workers = [spawn_worker(role, address, payload, args) for role in ("insert", "sample")]
    try:
        for p in workers:  # both have imported TF/Reverb and connected
            wait_line(p, "ready", 180)
        for p in workers:
            p.stdin.write("go\n")
            p.stdin.flush()
        deadline = time.monotonic() + 30
        while counters(client, RATIO_TABLE)[1] == 0:  # until sampling has started
            if time.monotonic() > deadline:
                raise RuntimeError("ratio4: no sample completed within 30 s")
            for p in workers:
                if p.poll() is not None:
                    raise RuntimeError(f"ratio4 worker exited with status {p.returncode}")
            time.sleep(0.05)
        time.sleep(args.warmup)
        i0, s0 = counters(client, RATIO_TABLE)
        t0 = time.perf_counter()
        time.sleep(args.seconds)
        i1, s1 = counters(client, RATIO_TABLE)
        dt = time.perf_counter() - t0
        for p in workers:
            if p.poll() is not None:
                raise RuntimeError(f"ratio4 worker exited early with status {p.returncode}")
    finally:
        for p in workers:
            if p.poll() is None:
                p.terminate()
        for p in workers:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    di, ds = i1 - i0, s1 - s0
    return ds / dt, di / dt, (ds / di if di else 0.0)


def ratio_worker(args):
    """One ratio4 client process: `insert` or `sample`, from "go" on stdin until killed."""
    import reverb
    client = reverb.Client(args.address)
    client.server_info(timeout=30)
    if args.ratio_worker == "insert":
        writer = Writer(client, RATIO_TABLE, step_pool(args.ratio_payload, seed=43), priority_pool(seed=8),
                        args.in_flight)
        print("ready", flush=True)
        sys.stdin.readline()
        while True:
            writer.write(64)
    else:
        ds = dataset(reverb, args.address, RATIO_TABLE, args.ratio_in_flight, args.ratio_workers)
        if args.ratio_batch > 1:
            ds = ds.batch(args.ratio_batch, drop_remainder=True)
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in ds:
            pass


# ---------------------------------------------------------------------------------------

def row_selected(patterns, payload, selector, metric):
    if not patterns:
        return True
    rid = f"{payload}/{selector}/{metric}"
    for p in patterns:
        if "/" in p:
            if fnmatch.fnmatchcase(rid, p):
                return True
        elif any(fnmatch.fnmatchcase(part, p) for part in (payload, selector, metric)):
            return True
    return False


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the JSON lines to this file too (overwritten)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds each row is measured (default 3)")
    ap.add_argument("--repeats", type=int, default=1, help="measurements per row, one line each (default 1)")
    ap.add_argument("--rows", nargs="*", default=[], metavar="PATTERN",
                    help='fnmatch patterns over "payload/selector/metric"; default: all rows')
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="warm-up seconds before each measurement (default 0.5)")
    ap.add_argument("--prefill-f32", type=int, default=10_000, help="items pre-filled for f32x100 sampling rows")
    ap.add_argument("--prefill-frames", type=int, default=2_000, help="items pre-filled for frame sampling rows")
    ap.add_argument("--in-flight", type=int, default=32,
                    help="writer: unconfirmed items allowed before append waits (default 32; Reverb warns above ~50)")
    ap.add_argument("--b1-api", choices=["sampler", "dataset", "client"], default="sampler",
                    help="sample_b1 through the client's streaming sampler with --b1-in-flight samples in flight "
                         "(default; the fastest), an unbatched TrajectoryDataset, or client.sample (1 in flight)")
    ap.add_argument("--b1-in-flight", type=int, default=256,
                    help="b1: samples in flight (sampler) or max_in_flight_samples_per_worker (dataset)")
    ap.add_argument("--b1-workers", type=int, default=1, help="TrajectoryDataset num_workers_per_iterator for b1 (dataset)")
    ap.add_argument("--b1-prefetch", type=int, default=0, help="tf.data prefetch depth after the b1 dataset (0: none)")
    ap.add_argument("--b256-in-flight", type=int, default=512,
                    help="TrajectoryDataset max_in_flight_samples_per_worker for b256 (default 512 = 2x batch)")
    ap.add_argument("--b256-workers", type=int, default=2, help="TrajectoryDataset num_workers_per_iterator for b256")
    ap.add_argument("--b256-prefetch", type=int, default=0, help="tf.data prefetch depth after .batch(256) (0: none)")
    ap.add_argument("--ratio-batch", type=int, default=256,
                    help="ratio4 sampler process: TrajectoryDataset batch (default 256, like sample_b256)")
    ap.add_argument("--ratio-in-flight", type=int, default=512, help="ratio4 sampler max_in_flight_samples_per_worker")
    ap.add_argument("--ratio-workers", type=int, default=2, help="ratio4 sampler num_workers_per_iterator")
    # Internal: child process roles.
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--ratio-worker", choices=["insert", "sample"], help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--ratio-payload", default="f32x100", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or args.warmup < 0:
        ap.error("need --seconds > 0, --repeats >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.serve:
        return serve(json.loads(args.serve))
    if args.ratio_worker:
        return ratio_worker(args)

    import reverb
    out = open(args.out, "w") if args.out else None

    def emit(obj):
        line = json.dumps(obj, separators=(",", ":"))
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    prios = priority_pool()
    for payload in PAYLOADS:
        sels = [s for s in SELECTORS if any(row_selected(args.rows, payload, s, m) for m in METRICS)]
        ratio = row_selected(args.rows, payload, "uniform", "ratio4")
        if not sels and not ratio:
            continue
        steps = step_pool(payload)
        count = args.prefill_f32 if payload == "f32x100" else args.prefill_frames
        server = ServerProcess(payload, sels, ratio)
        log(f"{payload}: server process {server.proc.pid} on {server.address}")
        try:
            client = reverb.Client(server.address)
            for sel in sels:
                base = {"system": "reverb", "payload": payload, "selector": sel}
                if row_selected(args.rows, payload, sel, "insert"):
                    measure_insert(client, sel, steps, prios, args.warmup, args.in_flight)  # warm-up
                    for _ in range(args.repeats):
                        rate = measure_insert(client, sel, steps, prios, args.seconds, args.in_flight)
                        emit({**base, "metric": "insert", "items_per_s": round(rate, 1)})
                sample_rows = [(m, b) for m, b in (("sample_b1", 1), ("sample_b256", 256))
                               if row_selected(args.rows, payload, sel, m)]
                if sample_rows:
                    prefill(client, sel, steps, prios, count, args.in_flight)
                    for metric, batch in sample_rows:
                        for _ in range(args.repeats):
                            rate = measure_sample(reverb, args, server.address, sel, batch, args.seconds, args.warmup)
                            emit({**base, "metric": metric, "items_per_s": round(rate, 1)})
                client.reset(sel)  # free the memory before the next table
            if ratio:
                for _ in range(args.repeats):
                    samples, inserts, observed = measure_ratio(client, server.address, payload, args)
                    emit({"system": "reverb", "payload": payload, "selector": "uniform", "metric": "ratio4",
                          "items_per_s": round(samples, 1), "inserts_per_s": round(inserts, 1),
                          "observed_ratio": round(observed, 3)})
        finally:
            server.stop()
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
