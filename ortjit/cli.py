"""The `ortjit` command line: run a model and time it, or explain what the compiler made of it."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULT_EXAMPLE = "logreg_iris.onnx"


def _example_path(name: str) -> str:
    from importlib import resources
    return str(resources.files("onnxruntime.datasets") / name)


def _parse_shapes(items) -> dict:
    shapes = {}
    for item in items or []:
        name, _, dims = item.partition("=")
        shapes[name] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d)
    return shapes


def _random_inputs(model, shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in model.inputs:
        shape = shapes.get(spec.name) or tuple(d if isinstance(d, int) else 1 for d in spec.shape)
        if spec.dtype is None:
            raise SystemExit(f"input '{spec.name}' is a {spec.type}: give it with --inputs")
        if spec.dtype.kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind in "iu":
            feed[spec.name] = rng.integers(0, 4, shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[spec.name] = np.full(shape, "a", dtype=object)
    return feed


def _load_inputs(model, args) -> dict:
    feed = {}
    if args.inputs:
        with np.load(args.inputs, allow_pickle=False) as data:
            feed.update({k: data[k] for k in data.files})
    for item in args.input or []:
        name, _, path = item.partition("=")
        feed[name] = np.load(path, allow_pickle=False)
    missing = {s.name for s in model.inputs} - set(feed)
    if missing:
        rand = _random_inputs(model, _parse_shapes(args.shape), args.seed)
        feed.update({k: rand[k] for k in missing})
    return feed


def _summary(value) -> str:
    if isinstance(value, np.ndarray):
        with np.printoptions(threshold=20, edgeitems=3, precision=5):
            return f"{value.dtype}{list(value.shape)} {value}"
    text = repr(value)
    return text if len(text) < 400 else text[:400] + " ..."


def _compile(path: str, args):
    import ortjit
    t0 = time.perf_counter()
    model = ortjit.compile(path, optimization_level=args.level)
    return model, time.perf_counter() - t0


# Three iris flowers (setosa, versicolor, virginica) for the default example, so that its
# labels and probabilities mean something; other models get random inputs unless given some.
IRIS_SAMPLES = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.7, 3.0, 5.2, 2.3]]


def cmd_run(args) -> int:
    path = args.model or _example_path(DEFAULT_EXAMPLE)
    model, t_load = _compile(path, args)
    if args.model is None and not args.input and not args.inputs:
        feed = {model.inputs[0].name: np.array(IRIS_SAMPLES, np.float32)}
        print(f"input {model.inputs[0].name}: {IRIS_SAMPLES}")
    else:
        feed = _load_inputs(model, args)
    t0 = time.perf_counter()
    outputs = model.run(feed)
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model.run(feed)
        times.append(time.perf_counter() - t0)
    print(f"model: {path}")
    for spec, value in zip(model.outputs, outputs):
        print(f"output {spec.name}: {_summary(value)}")
    print(f"load + optimize: {t_load * 1e3:.1f} ms")
    print(f"first run (plan + kernel compile or cache load): {t_first * 1e3:.1f} ms")
    if times:
        print(f"steady run: median {np.median(times) * 1e6:.1f} us over {len(times)} runs")
    return 0


def cmd_explain(args) -> int:
    model, _ = _compile(args.model or _example_path(DEFAULT_EXAMPLE), args)
    model.run(_load_inputs(model, args))
    print(model.explain())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ortjit", description="Compile and run ONNX models with fused Numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, text in (("run", cmd_run, "run a model and time it (default: a shipped example)"),
                           ("explain", cmd_explain, "show the passes applied, fused groups, plans and kernel sources")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("model", nargs="?", help=f"an .onnx file (default: the shipped {DEFAULT_EXAMPLE})")
        p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input from a .npy file")
        p.add_argument("--inputs", metavar="FILE.npz", help="inputs from an .npz file, by name")
        p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                       help="shape of a random input, e.g. x=1,3,224,224 (inputs not given are random)")
        p.add_argument("--seed", type=int, default=0, help="seed of random inputs")
        p.add_argument("--level", type=int, default=99, help="graph optimization level: 0, 1, 2 or 99")
        if name == "run":
            p.add_argument("--repeat", type=int, default=10, help="timed runs after the first (default 10)")
        p.set_defaults(func=fn)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import OrtjitError
    try:
        return args.func(args)
    except OrtjitError as e:
        print(f"ortjit: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
