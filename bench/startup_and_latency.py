"""ortjit alone: session creation, first run and steady-state latency on the shipped
examples and two of the onnx wheel's light CNNs. The side-by-side comparison with the real
ONNX Runtime (in its own virtual environment) is bench/compare.py's job (issue 4).

    python bench/startup_and_latency.py [--rounds N] [--quick]

Steady state: median over `rounds` bursts of the per-call mean of a burst.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import onnx
from onnx.backend.test.runner import Runner

import onnxruntime as ort

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def example_feeds():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    iris = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    yield "sigmoid.onnx", ort.datasets.get_example("sigmoid.onnx"), {"x": x}
    yield "mul_1.onnx", ort.datasets.get_example("mul_1.onnx"), {"X": np.ones((3, 2), np.float32)}
    yield "logreg_iris.onnx", ort.datasets.get_example("logreg_iris.onnx"), {"float_input": iris}


def light_feeds(names):
    for name in names:
        path = os.path.join(LIGHT, f"light_{name}.onnx")
        model = onnx.load(path)
        inits = {t.name for t in model.graph.initializer}
        feed = {vi.name: Runner.generate_dummy_data(vi, seed=0, name=name, random=False)
                for vi in model.graph.input if vi.name not in inits}
        yield f"light_{name}", path, feed


def measure(path, feed, rounds, burst_seconds=0.2):
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path)
    t1 = time.perf_counter()
    sess.run(None, feed)
    t2 = time.perf_counter()
    per_call = []
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            sess.run(None, feed)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= burst_seconds:
                break
        per_call.append(elapsed / n)
    return t1 - t0, t2 - t1, statistics.median(per_call)


def fmt(seconds):
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.1f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="examples only, one round (for CI)")
    args = ap.parse_args(argv)
    cases = list(example_feeds())
    if not args.quick:
        cases += list(light_feeds(["squeezenet", "resnet50"]))
    rounds = 1 if args.quick else args.rounds
    print(f"{'model':<20} {'session':>10} {'first run':>10} {'steady':>10}")
    for name, path, feed in cases:
        create, first, steady = measure(path, feed, rounds, 0.02 if args.quick else 0.2)
        print(f"{name:<20} {fmt(create):>10} {fmt(first):>10} {fmt(steady):>10}")


if __name__ == "__main__":
    main()
