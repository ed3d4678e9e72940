"""ortjit side by side with the real ONNX Runtime: latency, start-up, memory, agreement.

    python bench/compare.py                      # every case; writes docs/benchmarks.md + .png
    python bench/compare.py --models 'squeeze|mlp' --rounds 5
    python bench/compare.py --quick              # CI: the one-node model, one round, no chart

Makes the ORT venv (bench/.venv-ort) and, for the PyTorch and scikit-learn models, a
model-making venv (bench/.venv-models) on first use; makes the models (bench/make_models.py,
into bench/.models); then measures each case with bench/measure.py and renders the page with
bench/report.py and the chart with bench/chart.py. Logs, dumped outputs, the kernel caches
and the raw results (benchmarks.json) go under bench/.results.

--quick, when the ORT venv cannot be made (no network, say), runs ortjit against itself and
says so, so that CI checks the harness without depending on a download.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import envs  # noqa: E402
import make_models  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=".*", help="regex over case names (make_models.py --list)")
    ap.add_argument("--rounds", type=int, default=7, help="bursts per runtime per case")
    ap.add_argument("--burst", type=float, default=0.2, help="seconds of back-to-back calls per burst")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra_op_num_threads on both")
    ap.add_argument("--startup-repeats", type=int, default=5, help="fresh processes for the start-up cost")
    ap.add_argument("--warm-repeats", type=int, default=3,
                    help="warm and ahead-of-time processes per case and runtime (the median is reported)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-process start-up measurements")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--no-ort", action="store_true", help="ortjit against itself (no ORT venv)")
    ap.add_argument("--quick", action="store_true", help="CI: the one-node model, one round, no chart")
    ap.add_argument("--out", help="where benchmarks.md/.png go (default docs/, or SCRATCH/quick with --quick)")
    ap.add_argument("--models-dir", default=make_models.DEFAULT_OUT)
    ap.add_argument("--scratch", default=os.path.join(HERE, ".results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.rounds, args.burst, args.startup_repeats, args.no_chart = "^one_node$", 1, 0.02, 1, True
        args.warm_repeats = 1
    out_dir = args.out or (os.path.join(args.scratch, "quick") if args.quick else os.path.join(ROOT, "docs"))
    selected = make_models.cases(args.models)
    if not selected:
        sys.exit(f"no case matches {args.models!r}: see python bench/make_models.py --list")

    # byte-compiled as `pip install` leaves a package (this machine sets PYTHONDONTWRITEBYTECODE,
    # so an editable checkout would be compiled from source by every new process)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "ortjit"),
                    os.path.join(ROOT, "onnxruntime")], check=False, stdout=subprocess.DEVNULL)
    ortjit = measure.Side("ortjit", sys.executable, {"PYTHONPATH": ROOT}, kernel_caches=True)
    ort, ref = reference_side(args)
    sides = [ortjit, ort]
    versions = {s.label: probe(s, args.scratch) for s in sides}
    if not ref["stand_in"]:
        if versions["ort"]["runtime"] != "onnxruntime":
            sys.exit(f"{envs.ORT_VENV} imports {versions['ort']['module']}, not ONNX Runtime")
        ref.update(name=f"ONNX Runtime {versions['ort']['version']}", numpy=versions["ort"]["numpy"])
    unmade = make_all(selected, args.models_dir)

    load_before = os.getloadavg()[0]
    results_cases = []
    for case in selected:
        if case["case"] in unmade:      # reported as a failure of both, not a reason to stop
            failed = {"error": unmade[case["case"]], "stage": "making the model"}
            results_cases.append({**case, "ortjit": dict(failed), "ort": dict(failed)})
            continue
        t0 = time.perf_counter()
        res = measure.measure_case(case, sides, args.models_dir, args.scratch, threads=args.threads,
                                   rounds=args.rounds, burst_s=args.burst, warm=not args.no_warm,
                                   repeats=args.warm_repeats)
        results_cases.append(res)
        print(progress_line(res, time.perf_counter() - t0), flush=True)
    startup = None
    if not args.no_warm:
        startup = measure.measure_startup(sides, args.models_dir, args.scratch, threads=args.threads,
                                          repeats=args.startup_repeats)
    results = {
        "command": "python bench/compare.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(), "load_before": load_before, "load_after": os.getloadavg()[0]},
        "ortjit": {"version": versions["ortjit"]["ortjit_version"], "commit": commit(),
                   "numba": versions["ortjit"]["numba"], "numpy": versions["ortjit"]["numpy"]},
        "reference": ref,
        "settings": {"threads": args.threads, "rounds": args.rounds, "burst_s": args.burst,
                     "warm_repeats": args.warm_repeats,
                     "rtol": measure.RTOL, "atol_scale": measure.ATOL_SCALE},
        "cases": results_cases, "startup": startup, "notes": make_models.notes(selected),
    }
    write_outputs(results, out_dir, args)


def reference_side(args):
    """The ORT side, or in --quick / --no-ort without ORT, ortjit standing in for it."""
    why = "--no-ort"
    if not args.no_ort:
        try:
            packages = envs.ORT_PACKAGES + ([] if args.no_chart else envs.CHART_PACKAGES)
            python = envs.ensure(envs.ORT_VENV, packages)
            return measure.Side("ort", python), {"stand_in": False, "short": "ORT"}
        except RuntimeError as e:
            if not args.quick:
                sys.exit(f"cannot make the ONNX Runtime venv: {e}")
            why = f"the ORT venv could not be made: {e}"
    print(f"NOTE: no ONNX Runtime ({why.splitlines()[0]}); ortjit runs against itself", flush=True)
    return (measure.Side("ort", sys.executable, {"PYTHONPATH": ROOT}, kernel_caches=True),
            {"stand_in": True, "short": "ortjit (stand-in)", "name": "ortjit itself", "why": why})


def probe(side, scratch):
    """Which onnxruntime a side's python imports, and the versions around it."""
    w = measure.WorkerProcess(side, os.path.join(scratch, "logs", f"probe.{side.label}.log"))
    try:
        return w.call("import")
    finally:
        w.close()


def make_all(selected, models_dir) -> dict:
    """Models that need only onnx are made with this python; the others in the models venv.
    Returns {case: why} for the cases whose model could not be made."""
    by_needs, unmade = {}, {}
    for c in selected:
        by_needs.setdefault(c["needs"], []).append(c["case"])
    for needs, names in by_needs.items():
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        try:
            python = sys.executable
            if needs != "onnx":
                python = envs.ensure(envs.MODELS_VENV, sorted({p for n in by_needs if n != "onnx"
                                                               for p in envs.MODEL_PACKAGES[n]}))
            res = subprocess.run([python, os.path.join(HERE, "make_models.py"), "--out", models_dir,
                                  "--models", pattern], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
            if res.returncode:
                raise RuntimeError("make_models.py failed: " + " | ".join(res.stderr.strip().splitlines()[-3:]))
        except RuntimeError as e:
            print(f"WARNING: cannot make {', '.join(names)}: {e}", file=sys.stderr)
            unmade.update({n: str(e) for n in names})
    return unmade


def progress_line(res, seconds):
    bits = [f"{res['case']:<24}"]
    for label in ("ortjit", "ort"):
        side = res[label]
        steady = f"FAILED at {side['stage']}" if "error" in side else report.fmt(side.get("steady_s"))
        bits.append(f"{label} {steady}")
    r = report.speed_ratio(res)
    bits.append(f"ratio {report.fr(r)}")
    if res.get("agreement") and not res["agreement"]["ok"]:
        bits.append("OUTPUTS DISAGREE")
    return "  ".join(bits) + f"  ({seconds:.0f} s)"


def machine():
    info = {"cores": os.cpu_count(), "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}", "cpu": platform.processor() or "unknown",
            "avx512": False, "memory_gib": 0.0}
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1).strip()
        info["avx512"] = " avx512f" in cpuinfo
        with open("/proc/meminfo") as f:
            info["memory_gib"] = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1)) / 2 ** 20
    except (OSError, AttributeError):
        pass
    return info


def commit():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_outputs(results, out_dir, args):
    import json
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(args.scratch, exist_ok=True)
    raw = os.path.join(args.scratch, "quick.json" if args.quick else "benchmarks.json")
    with open(raw, "w") as f:
        json.dump(results, f, indent=1)
    md = os.path.join(out_dir, "benchmarks.md")
    with open(md, "w") as f:
        f.write(report.render(results))
    print(f"\nwrote {md} (raw results: {raw})")
    if not (args.no_chart or results["reference"]["stand_in"]):
        python = envs.ensure(envs.ORT_VENV, envs.ORT_PACKAGES + envs.CHART_PACKAGES)
        png = os.path.join(out_dir, "benchmarks.png")
        subprocess.run([python, os.path.join(HERE, "chart.py"), raw, png], check=True, cwd=HERE)
        print(f"wrote {png}")
    for _, target, goal, measured, ok in report.targets(results):
        mark = "n/a " if results["reference"]["stand_in"] else "met " if ok else "MISS"
        print(f"  {mark}  {target}: {measured} (goal {goal})")


if __name__ == "__main__":
    main()
