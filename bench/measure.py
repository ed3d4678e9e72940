"""Drive two runtimes' workers (bench/worker.py) through one benchmark case.

A Side is one runtime: the python that runs its worker and that worker's environment. Per
case (measure_case):

1. "cold": a fresh process per side, with ortjit's kernel caches emptied, loads the model and
   runs it once: session creation and first run as a new user pays them (for ortjit, kernel
   compiles and Numba's start-up land in the first run);
2. steady state in those same processes: warm-up, then `rounds` bursts of back-to-back calls,
   the two sides taking turns (and swapping who goes first each round) so that whatever else
   the machine is doing drifts onto both alike. Only one process works at a time. The number
   is the median over rounds of a burst's mean time per call;
3. outputs of the last call of each side compared, and each side's peak RSS;
4. "warm": a fresh process per side runs another model first (bench/make_models.WARMUP),
   then this one, its kernels now on disk: session creation + first run as the next process
   of a deployed service pays them, and its peak RSS without the compiler's share. Several
   such processes per side (`repeats`, taking turns); the one with the median total counts;
5. "ahead of time" (ortjit only): `ortjit compile` writes the case's model compiled for its
   feed's shapes into a folder; fresh processes (`repeats`) with an empty kernel cache each
   run the warm-up model, then create a session on that folder and run it once: what a
   service that ships a compiled model pays (compared with ORT's warm numbers, which need
   no compile step); the median total counts.

measure_startup: the one-time cost of a fresh process, `import onnxruntime` to the first
result of the one-node model (kernel cache warm), median over a few processes.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.py")
RTOL = 1e-3
ATOL_SCALE = 1e-5   # atol = this x the reference output's largest magnitude (values near 0)


class WorkerError(RuntimeError):
    pass


@dataclass
class Side:
    label: str               # "ortjit" or "ort": the key in results
    python: str
    env: dict = field(default_factory=dict)   # what replaces os.environ's PYTHONPATH and co.
    kernel_caches: bool = False               # ortjit: give it its own, emptied, kernel caches


def side_env(side: Side, cache_dir: str | None = None) -> dict:
    """The environment of a side's process: ours without PYTHONPATH and PYTHONHOME, the
    side's own, and for ortjit its kernel caches under cache_dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(side.env)
    if cache_dir and side.kernel_caches:
        env["ORTJIT_CACHE_DIR"] = os.path.join(cache_dir, "ortjit")
        env["NUMBA_CACHE_DIR"] = os.path.join(cache_dir, "numba")   # anything cached by Numba itself
    return env


class WorkerProcess:
    """One worker.py process; call() sends a request and waits for its reply."""

    def __init__(self, side: Side, log_path: str, cache_dir: str | None = None):
        env = side_env(side, cache_dir)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        self.log_path, self.log = log_path, open(log_path, "a")
        self.proc = subprocess.Popen([side.python, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env, cwd=HERE)

    def call(self, cmd: str, timeout: float = 900, **args) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else None
        if not line:
            self.close()
            why = f"timed out after {timeout:.0f} s" if line is None else f"worker died (exit {self.proc.returncode})"
            raise WorkerError(f"{cmd}: {why}; {self._log_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def _log_tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
        return " | ".join(lines[-3:])

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def measure_case(case: dict, sides: list[Side], models_dir: str, scratch: str, *, threads: int,
                 rounds: int, burst_s: float, warm: bool = True, repeats: int = 3) -> dict:
    name = case["case"]
    model = os.path.join(models_dir, case["model"] + ".onnx")
    feed = os.path.join(models_dir, name + ".npz")
    cache_dir = os.path.join(scratch, "kernels", name)
    shutil.rmtree(cache_dir, ignore_errors=True)
    out = {**case, **{s.label: {} for s in sides}}
    workers = {}

    def step(side, stage, fn):
        """Run fn for side unless it already failed; a failure is recorded, not raised."""
        res = out[side.label]
        if "error" in res:
            return None
        try:
            return fn()
        except WorkerError as e:
            res["error"], res["stage"] = str(e), stage
            if side.label in workers:
                workers.pop(side.label).close()
            return None

    # 1. cold: fresh process, empty kernel caches
    for s in sides:
        def cold(s=s):
            w = workers[s.label] = WorkerProcess(s, os.path.join(scratch, "logs", f"{name}.{s.label}.log"), cache_dir)
            info = w.call("import")
            out[s.label].update(import_s=info["import_s"])
            out[s.label]["create_s"] = w.call("load", model=model, feed=feed, threads=threads)["create_s"]
            out[s.label]["first_s"] = w.call("run", n=1)["per_call_s"]
        step(s, "load / first run", cold)
    # 2. steady state: warm-up sizes each side's bursts, then the sides take turns
    burst_n = {}
    for s in sides:
        burst_n[s.label] = step(s, "warm-up", lambda s=s: _calibrate(workers[s.label], burst_s))
    for r in range(rounds):
        for s in (sides if r % 2 == 0 else sides[::-1]):
            t = step(s, "steady state", lambda s=s: workers[s.label].call("run", n=burst_n[s.label])["per_call_s"])
            if t is not None:
                out[s.label].setdefault("bursts_s", []).append(t)
    # 3. outputs and memory
    dumps = {}
    for s in sides:
        dumps[s.label] = step(s, "outputs", lambda s=s: workers[s.label].call(
            "dump", dir=os.path.join(scratch, "outputs", name, s.label)))
        rss = step(s, "rss", lambda s=s: workers[s.label].call("rss"))
        if rss:
            out[s.label]["peak_rss_mb"] = rss["peak_rss_mb"]
        if out[s.label].get("bursts_s"):
            out[s.label]["steady_s"] = statistics.median(out[s.label]["bursts_s"])
        if s.label in workers:
            workers.pop(s.label).close()
    if all(dumps.get(s.label) for s in sides):
        out["agreement"] = compare_outputs(dumps[sides[0].label], dumps[sides[1].label])
    # 4. warm: a process that already ran another model, kernels on disk; `repeats` such
    # processes per side, taking turns, and the one with the median total is recorded (a
    # single process swung by 20% and more on this shared machine)
    if warm:
        for r in range(repeats):
            for s in (sides if r % 2 == 0 else sides[::-1]):
                if "error" in out[s.label] or "warm_error" in out[s.label]:
                    continue
                w = WorkerProcess(s, os.path.join(scratch, "logs", f"{name}.{s.label}.warm{r}.log"), cache_dir)
                try:
                    _after_warmup(w, models_dir, threads)
                    create = w.call("load", model=model, feed=feed, threads=threads)["create_s"]
                    first = w.call("run", n=1)["per_call_s"]
                    w.call("run", n=1)
                    rss = w.call("rss")["peak_rss_mb"]
                    out[s.label].setdefault("warm_runs", []).append([create, first, rss])
                except WorkerError as e:
                    out[s.label]["warm_error"] = str(e)
                finally:
                    w.close()
        for s in sides:
            runs = out[s.label].get("warm_runs")
            if runs:
                create, first, rss = _median_run(runs)
                out[s.label].update(warm_create_s=create, warm_first_s=first, warm_peak_rss_mb=rss)
    # 5. ahead of time
    if warm:
        for s in sides:
            if s.kernel_caches and "error" not in out[s.label]:
                out[s.label].update(_ahead_of_time(s, name, model, feed, models_dir, scratch, threads, repeats))
    return out


def _after_warmup(w: WorkerProcess, models_dir: str, threads: int) -> None:
    """The worker imports the runtime and runs the warm-up model once: a process that has
    already run another model."""
    w.call("import")
    w.call("load", model=os.path.join(models_dir, "warmup.onnx"), feed=os.path.join(models_dir, "warmup.npz"),
           threads=threads)
    w.call("run", n=1)


def _median_run(runs: list) -> list:
    """The run (create, first, ...) whose create + first is the median (the upper one of
    an even count)."""
    return sorted(runs, key=lambda r: r[0] + r[1])[len(runs) // 2]


def _ahead_of_time(side: Side, name: str, model: str, feed: str, models_dir: str, scratch: str, threads: int,
                   repeats: int = 1) -> dict:
    """`ortjit compile` the model for the feed's shapes, then load that folder in a process
    whose kernel cache is empty after running the warm-up model."""
    folder = os.path.join(scratch, "artifacts", name)
    cache_dir = os.path.join(scratch, "kernels", name)
    shutil.rmtree(folder, ignore_errors=True)
    env = side_env(side, cache_dir)
    t0 = time.perf_counter()
    done = subprocess.run([side.python, "-m", "ortjit", "compile", model, "-o", folder, "--inputs", feed],
                          capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return {"aot_error": (done.stderr.strip().splitlines() or ["ortjit compile failed"])[-1]}
    result = {"aot_compile_s": time.perf_counter() - t0}
    empty = os.path.join(scratch, "kernels", name + "-aot")
    runs = []
    for r in range(repeats):
        shutil.rmtree(empty, ignore_errors=True)   # each process starts with an empty kernel cache
        w = WorkerProcess(side, os.path.join(scratch, "logs", f"{name}.{side.label}.aot{r}.log"), empty)
        try:
            _after_warmup(w, models_dir, threads)
            create = w.call("load", model=folder, feed=feed, threads=threads)["create_s"]
            runs.append([create, w.call("run", n=1)["per_call_s"]])
        except WorkerError as e:
            result["aot_error"] = str(e)
            break
        finally:
            w.close()
    if runs:
        result["aot_runs"] = runs
        result["aot_create_s"], result["aot_first_s"] = _median_run(runs)
    return result


def _calibrate(worker: WorkerProcess, burst_s: float) -> int:
    """Run for about one burst's time, growing the call count, and return the number of
    calls that fills a burst. Two calls first, not counted: a process's first calls may
    compile (ortjit computes some first calls with numpy before Numba is imported, and
    compiles or loads those kernels at the second call), which would size the bursts."""
    worker.call("run", n=2)
    n, spent = 1, 0.0
    while True:
        per_call = worker.call("run", n=n)["per_call_s"]
        spent += per_call * n
        if spent >= burst_s or n >= 10000:
            return max(1, round(burst_s / per_call))
        n *= 4


def compare_outputs(ours: dict, ref: dict) -> dict:
    """Each output within rtol RTOL (atol ATOL_SCALE x the reference's largest magnitude);
    non-float outputs (labels) must match exactly."""
    if len(ours["files"]) != len(ref["files"]):
        return {"ok": False, "worst": None, "detail": f"outputs differ: {ours['names']} vs {ref['names']}"}
    worst, problems = 0.0, []
    for name, fa, fb in zip(ref["names"], ours["files"], ref["files"]):
        a, b = np.load(fa), np.load(fb)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} vs {b.shape}")
        elif a.dtype.kind in "fc" or b.dtype.kind in "fc":
            a, b = a.astype(np.float64), b.astype(np.float64)
            atol = ATOL_SCALE * max(float(np.nanmax(np.abs(b), initial=0.0)), 1e-30)
            with np.errstate(invalid="ignore"):
                err = np.abs(a - b) / (atol + RTOL * np.abs(b))     # <= 1 passes
            err = np.where(np.isnan(a) & np.isnan(b), 0.0, np.where(np.isnan(err), np.inf, err))
            e = float(err.max(initial=0.0))
            worst = max(worst, e)
            if e > 1.0:
                problems.append(f"{name}: max error {e:.3g}x the tolerance")
        elif not np.array_equal(a, b):
            problems.append(f"{name}: {int(np.sum(a != b))} of {a.size} differ")
    return {"ok": not problems, "worst": worst, "detail": "; ".join(problems)}


def measure_startup(sides: list[Side], models_dir: str, scratch: str, *, threads: int, repeats: int) -> dict:
    """Fresh process to first result of the one-node model; ortjit's kernel cache primed by
    one process first (the one-time compile is the cold column of the model table)."""
    cache_dir = os.path.join(scratch, "kernels", "startup")
    shutil.rmtree(cache_dir, ignore_errors=True)
    model, feed = os.path.join(models_dir, "one_node.onnx"), os.path.join(models_dir, "one_node.npz")
    results = {s.label: [] for s in sides}
    errors = {}
    for i in range(repeats + 1):         # run 0 primes the cache and is not counted
        for s in (sides if i % 2 == 0 else sides[::-1]):
            if s.label in errors:
                continue
            t0 = time.perf_counter()
            w = WorkerProcess(s, os.path.join(scratch, "logs", f"startup.{s.label}.log"), cache_dir)
            try:
                r = w.call("import")
                r.update(w.call("load", model=model, feed=feed, threads=threads))
                r["first_s"] = w.call("run", n=1)["per_call_s"]
                r["process_s"] = time.perf_counter() - t0
            except WorkerError as e:
                errors[s.label] = str(e)
                continue
            finally:
                w.close()
            if i:
                results[s.label].append(r)
    summary = {}
    for s in sides:
        runs = results[s.label]
        if s.label in errors or not runs:
            summary[s.label] = {"error": errors.get(s.label, "no runs")}
            continue
        med = {k: statistics.median(r[k] for r in runs) for k in ("import_s", "create_s", "first_s", "process_s")}
        med["total_s"] = statistics.median(r["import_s"] + r["create_s"] + r["first_s"] for r in runs)
        summary[s.label] = {**med, "repeats": len(runs), "version": runs[0]["version"]}
    return summary
