"""Where does a model's time go in ortjit? Runs it with profiling on and sums the per-kernel
times of the ONNX Runtime-style JSON trace by op type and by node.

    python bench/profile_ops.py bench/.models/resnet50.onnx [--feed bench/.models/resnet50-b1.npz]
        [--runs 20] [--top 15]

Without --feed the inputs are random, with symbolic dims set to 1. The trace is the one a
user gets from SessionOptions.enable_profiling, so this reads what they would read.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import onnxruntime as ort  # noqa: E402  (ours)


def random_feed(sess) -> dict:
    rng = np.random.default_rng(0)
    feed = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dtype = np.dtype(i.type[len("tensor("):-1].replace("float", "float32").replace("float3264", "float64")
                         .replace("double", "float64"))
        feed[i.name] = rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
    return feed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--feed", help=".npz of inputs")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    plain = ort.InferenceSession(args.model, opts)
    feed = dict(np.load(args.feed)) if args.feed else random_feed(plain)
    for _ in range(3):
        plain.run(None, feed)
    t = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        plain.run(None, feed)
        t.append(time.perf_counter() - t0)
    steady = float(np.median(t)) * 1e3

    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "profile")
    sess = ort.InferenceSession(args.model, opts)
    sess.run(None, feed)
    for _ in range(args.runs):
        sess.run(None, feed)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    by_type, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_type[op] += e["dur"]
            by_node[(op, e["name"][:-len("_kernel_time")])] += e["dur"]
    total = sum(by_type.values())
    print(f"steady median {steady:.3f} ms; kernels sum to {total / 1e3 / (args.runs + 1):.3f} ms a run")
    for op, us in by_type.most_common():
        print(f"  {op:<28} {us / 1e3 / (args.runs + 1):9.3f} ms  {100 * us / total:5.1f}%")
    print(f"top {args.top} nodes:")
    for (op, name), us in by_node.most_common(args.top):
        print(f"  {op:<20} {name:<40} {us / 1e3 / (args.runs + 1):9.3f} ms")


if __name__ == "__main__":
    main()
