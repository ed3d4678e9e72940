"""The `ortjit` command line: run a model and time it, benchmark it, or explain what the compiler made of it."""
from __future__ import annotations

import argparse
import sys
import textwrap
import time
from array import array

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


def _signatures(items) -> list[dict]:
    """--shape NAME=DIMS given k times for a name: the k-th signature gets the k-th dims."""
    out: list[dict] = []
    for item in items or []:
        name, dims = next(iter(_parse_shapes([item]).items()))
        free = next((sig for sig in out if name not in sig), None)
        if free is None:
            out.append(free := {})
        free[name] = dims
    return out


def cmd_compile(args) -> int:
    from . import artifact
    t0 = time.perf_counter()
    feeds = []
    if args.inputs:
        with np.load(args.inputs, allow_pickle=False) as data:
            feeds.append({k: data[k] for k in data.files})

    def progress(k, total, shapes):
        print(f"compiling for shapes {shapes} ({k + 1}/{total})", file=sys.stderr, flush=True)

    manifest = artifact.write(args.model, args.output, _signatures(args.shape), feeds, progress,
                              optimization_level=args.level)
    size = sum(manifest["entries"].values())
    print(f"wrote {args.output}: the optimized model ({manifest['model_bytes'] / 2**20:.1f} MB, "
          f"weights {manifest['weights_bytes'] / 2**20:.1f} MB), "
          f"{len(manifest['entries'])} compiled kernels ({size / 2**20:.1f} MB), "
          f"{len(manifest['signatures'])} shape signature(s), in {time.perf_counter() - t0:.1f} s")
    print(f"load it with onnxruntime.InferenceSession({args.output!r}) or `ortjit run {args.output}`")
    return 0


def _time_runs(model, feed, repeat: int, duration: float | None) -> tuple[np.ndarray, float]:
    """Seconds of each run, and of all of them: `repeat` runs, or as many as fit in `duration`."""
    times = array("d")  # 8 bytes a run: a long -t on a tiny model makes millions of runs
    start = time.perf_counter()
    while (time.perf_counter() - start < duration) if duration else len(times) < repeat:
        t0 = time.perf_counter()
        model.run(feed)
        times.append(time.perf_counter() - t0)
    return np.frombuffer(times), time.perf_counter() - start


def cmd_bench(args) -> int:
    path = args.model or _example_path(DEFAULT_EXAMPLE)
    model, t_load = _compile(path, args)
    feed = _load_inputs(model, args)
    t0 = time.perf_counter()
    model.run(feed)
    t_first = time.perf_counter() - t0
    for _ in range(args.warmup):
        model.run(feed)
    times, total = _time_runs(model, feed, args.repeat, args.duration)
    print(f"model: {path}")
    for name, value in feed.items():
        print(f"input {name}: {getattr(value, 'dtype', type(value).__name__)}{list(np.shape(value))}")
    print(f"load + optimize: {t_load * 1e3:.3f} ms")
    print(f"first run (plan + kernel compile or cache load): {t_first * 1e3:.3f} ms")
    print(f"warmup runs: {args.warmup}")
    print(f"runs: {len(times)}")
    print(f"total time: {total * 1e3:.3f} ms")
    ms = times * 1e3
    stats = [("min", ms.min()), ("mean", ms.mean())]
    stats += [(f"p{q}", np.percentile(ms, q)) for q in (50, 90, 95, 99)] + [("max", ms.max())]
    for label, value in stats:
        print(f"latency {label + ':':5} {value:10.3f} ms")
    print(f"throughput: {len(times) / total:.1f} runs/s")
    return 0


def _count(minimum: int):
    """An argparse type: an int no less than `minimum`."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    """The model and its inputs, the same for every subcommand."""
    p.add_argument("model", nargs="?", help="an .onnx file or a folder written by `ortjit compile` "
                                             f"(default: the shipped example {DEFAULT_EXAMPLE})")
    g = p.add_argument_group("inputs", textwrap.fill(
        "Inputs not given in a file are random, with the model's shapes (symbolic dimensions become 1 "
        "unless --shape says otherwise)."))
    g.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="read input NAME from a .npy file (repeat for several inputs)")
    g.add_argument("--inputs", metavar="FILE.npz", help="read inputs from an .npz file, one array per input name")
    g.add_argument("--shape", action="append", metavar="NAME=DIMS",
                   help="shape of random input NAME, e.g. x=1,3,224,224 or x=1x3x224x224")
    g.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--level", type=int, default=99,
                   help="graph optimization level: 0 none, 1 basic, 2 extended, 99 all (default 99)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=_count(0), default=10, metavar="N",
                   help="timed runs after the first; the median is printed (default 10)")


def _add_bench_args(p: argparse.ArgumentParser) -> None:
    how_long = p.add_mutually_exclusive_group()
    how_long.add_argument("-r", "--repeat", type=_count(1), default=100, metavar="N",
                          help="number of timed runs (default 100)")
    how_long.add_argument("-t", "--duration", type=_seconds, metavar="SECONDS",
                          help="time runs until SECONDS have passed, instead of a fixed number")
    p.add_argument("--warmup", type=_count(0), default=5, metavar="N",
                   help="untimed runs after the first run and before the timed ones (default 5)")


def _add_compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the .onnx file to compile")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="the folder to write (created if needed)")
    p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                   help="compile for input NAME at these dims, e.g. x=1,3,224,224; give a name again for "
                        "another signature (x=1,3,224,224 --shape x=8,3,224,224). Inputs with fixed dims "
                        "need none.")
    p.add_argument("--inputs", metavar="FILE.npz", help="also compile for these sample inputs, one array per name")
    p.add_argument("--level", type=int, default=99,
                   help="graph optimization level: 0 none, 1 basic, 2 extended, 99 all (default 99)")


# name, function, one-line help, description, example, extra arguments
SUBCOMMANDS = (
    ("compile", cmd_compile, "compile a model ahead of time into a folder",
     "Optimize a model and compile its kernels for the given input shapes, then write the "
     "optimized graph, the compiled kernels and a manifest (versions, CPU, shapes) into "
     "OUT_DIR. onnxruntime.InferenceSession(OUT_DIR) and `ortjit run OUT_DIR` load it and run "
     "the first call for those shapes without compiling, on machines with the same CPU "
     "features and versions (elsewhere they compile, with a warning).",
     "ortjit compile resnet50.onnx -o resnet50.ortjit --shape data=1,3,224,224", None),
    ("run", cmd_run, "run a model, print its outputs and time it",
     "Compile a model, run it, print each output and the times of loading, of the first run "
     "(plan + kernel compile or cache load) and of the steady runs after it.",
     "ortjit run model.onnx --shape input=1,3,224,224 --repeat 20", _add_run_args),
    ("explain", cmd_explain, "show what the compiler made of a model",
     "Compile a model, run it once, then print the graph passes applied, the fused groups, "
     "the execution plan and the generated kernel sources.",
     "ortjit explain model.onnx --input X=x.npy", None),
    ("bench", cmd_bench, "benchmark a model: latency percentiles and throughput",
     "Compile a model, run it once (reported apart: plan + kernel compile or cache load), "
     "warm up, then time each run and print the number of runs, the total time, the latency "
     "min / mean / p50 / p90 / p95 / p99 / max in milliseconds and the throughput.",
     "ortjit bench model.onnx -r 1000 --warmup 10 --shape input=8,3,224,224", _add_bench_args),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ortjit", description="Compile and run ONNX models with fused Numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, text, description, example, add_args in SUBCOMMANDS:
        # Raw text, wrapped here, so that the example command stays on one line.
        p = sub.add_parser(name, help=text, description=textwrap.fill(description), epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "compile":
            _add_compile_args(p)
        else:
            _add_model_args(p)
        if add_args:
            add_args(p)
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
    except OSError as e:  # an input file or the output folder
        print(f"ortjit: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
