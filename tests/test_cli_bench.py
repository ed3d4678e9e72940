"""`ortjit bench`, the subcommands' --help, and the compile progress bar (ortjit/progress.py)."""
from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest

from ortjit import cli, progress
from ortjit.progress import Progress

STATS = ("min", "mean", "p50", "p90", "p95", "p99", "max")


def _bench(capsys, *args) -> dict:
    """Run `ortjit bench` in-process; its report as label -> number."""
    assert cli.main(["bench", *args]) == 0
    out = capsys.readouterr().out
    found = {label: float(m.group(1)) for label in STATS
             if (m := re.search(rf"^latency {label}:\s+([\d.]+) ms$", out, re.M))}
    assert set(found) == set(STATS), out
    found["runs"] = int(re.search(r"^runs: (\d+)$", out, re.M).group(1))
    found["total"] = float(re.search(r"^total time: ([\d.]+) ms$", out, re.M).group(1))
    found["throughput"] = float(re.search(r"^throughput: ([\d.]+) runs/s$", out, re.M).group(1))
    assert re.search(r"^first run \(plan \+ kernel compile or cache load\): [\d.]+ ms$", out, re.M), out
    return found


def test_bench_fixed_runs_reports_ordered_percentiles(capsys):
    r = _bench(capsys, cli._example_path("logreg_iris.onnx"), "-r", "20", "--warmup", "2")
    assert r["runs"] == 20
    # printed to 3 decimals, so the order survives rounding
    assert 0 <= r["min"] <= r["p50"] <= r["p90"] <= r["p95"] <= r["p99"] <= r["max"]
    assert r["min"] <= r["mean"] <= r["max"]
    assert r["max"] > 0
    # the runs fit in the total time, and the throughput is runs over that time
    assert r["runs"] * r["min"] <= r["total"] + 0.01
    assert r["throughput"] == pytest.approx(r["runs"] / (r["total"] / 1e3), rel=0.05)


def test_bench_statistics_of_known_times(monkeypatch, capsys):
    # runs of 1, 2, ..., 100 ms in 5.05 s: every statistic is known exactly
    monkeypatch.setattr(cli, "_time_runs", lambda *a: (np.arange(1, 101) * 1e-3, 5.05))
    r = _bench(capsys, cli._example_path("sigmoid.onnx"), "--warmup", "0")
    assert r["runs"] == 100 and r["total"] == 5050.0
    assert [r[k] for k in STATS] == [1.0, 50.5, 50.5, 90.1, 95.05, 99.01, 100.0]
    assert r["throughput"] == pytest.approx(100 / 5.05, abs=0.1)


def test_bench_duration_runs_until_the_time_is_up(capsys):
    r = _bench(capsys, cli._example_path("sigmoid.onnx"), "-t", "0.2", "--warmup", "0")
    assert r["total"] >= 200.0
    assert r["runs"] >= 2  # a Sigmoid on 60 floats takes far less than 0.1 s
    assert r["throughput"] == pytest.approx(r["runs"] / (r["total"] / 1e3), rel=0.05)


@pytest.mark.parametrize("args", [["-r", "0"], ["-t", "0"], ["-r", "3", "-t", "1"], ["--warmup", "-1"]])
def test_bench_rejects_bad_counts(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", *args])
    assert e.value.code == 2
    assert "ortjit bench: error" in capsys.readouterr().err


@pytest.mark.parametrize("command, options", [
    ("run", ["--repeat", "--input", "--inputs", "--shape", "--seed", "--level", "example:"]),
    ("explain", ["--input", "--inputs", "--shape", "--seed", "--level", "kernel sources", "example:"]),
    ("bench", ["--repeat", "--duration", "--warmup", "--input", "--inputs", "--shape", "--seed", "--level",
               "p99", "throughput", "example:"]),
])
def test_subcommand_help_describes_its_options(command, options, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: ortjit {command}")
    for option in options:
        assert option in text, option
    assert f"\n  ortjit {command} " in text  # the example command, on a line of its own


def _bar_output(monkeypatch, env: str | None, steps: int = 3, **kw) -> str:
    if env is None:
        monkeypatch.delenv("ORTJIT_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("ORTJIT_PROGRESS", env)
    stream = io.StringIO()  # not a terminal
    with Progress(steps, "compiling", stream=stream, **kw) as bar:
        for k in range(steps):
            bar.advance(f"op{k}")
    return stream.getvalue()


def test_progress_forced_on_draws_a_bar_and_ends_its_line(monkeypatch):
    out = _bar_output(monkeypatch, "1", delay=0)
    assert out.startswith("\rcompiling [") and "op0" in out
    last = out.rsplit("\r", 1)[1]
    assert "3/3" in last and "#" * progress.WIDTH in last
    assert last.endswith("\n") and last.rstrip().endswith("done")  # padded to blank out a longer line


@pytest.mark.parametrize("env", ["0", None])  # forced off; unset and stderr not a terminal
def test_progress_off_writes_nothing(monkeypatch, env):
    assert _bar_output(monkeypatch, env, delay=0) == ""


def test_progress_waits_for_the_delay(monkeypatch):
    assert _bar_output(monkeypatch, "1", delay=60) == ""
    monkeypatch.setattr(progress, "DELAY", 0)  # the module default is what a first run gets
    assert _bar_output(monkeypatch, "1") != ""


def test_progress_redraws_at_most_ten_times_a_second(monkeypatch):
    t0 = time.perf_counter()
    out = _bar_output(monkeypatch, "1", steps=20000, delay=0)
    elapsed = time.perf_counter() - t0
    # one draw at once, at most one per INTERVAL after it, and the final one
    assert 2 <= out.count("\r") <= elapsed / progress.INTERVAL + 2


def test_first_run_shows_progress_per_kernel_call(monkeypatch, capsys):
    monkeypatch.setenv("ORTJIT_PROGRESS", "1")
    monkeypatch.setattr(progress, "DELAY", 0)
    monkeypatch.setattr(progress, "INTERVAL", 0)  # draw every node
    assert cli.main(["bench", cli._example_path("logreg_iris.onnx"), "-r", "2", "--warmup", "0"]) == 0
    captured = capsys.readouterr()
    assert "ortjit: compiling kernels [" in captured.err
    assert "LinearClassifier" in captured.err and "ZipMap" in captured.err
    assert captured.err.endswith("\n") and re.search(r"3/3 [\d.]+s done$", captured.err.rstrip())
    assert "compiling kernels" not in captured.out  # the report on stdout stays clean

    monkeypatch.setenv("ORTJIT_PROGRESS", "0")
    assert cli.main(["bench", cli._example_path("logreg_iris.onnx"), "-r", "2", "--warmup", "0"]) == 0
    assert "compiling kernels" not in capsys.readouterr().err
