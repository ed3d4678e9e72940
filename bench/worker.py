"""One runtime in its own process, driven by compare.py over JSON lines.

    python bench/worker.py        # whichever `onnxruntime` this python imports is measured

Our python imports this project's facade (ortjit); the ORT venv's python imports the real
ONNX Runtime. Both speak the same protocol: one JSON object per line on stdin, one reply per
line on stdout ({"error": ...} when a step fails; the worker stays up).

    {"cmd": "import"}                            -> runtime, version, import_s
    {"cmd": "load", "model": P, "feed": NPZ, "threads": T}   -> create_s
    {"cmd": "run", "n": N}                       -> per_call_s (mean over N back-to-back calls)
    {"cmd": "dump", "dir": D}                    -> files: last outputs as D/out_<i>.npy
    {"cmd": "rss"}                               -> peak_rss_mb, rss_mb
    {"cmd": "quit"}

Only the standard library is imported before "import", so import_s is what a fresh process
pays for `import onnxruntime` (numpy included, which both pull in).
"""
import json
import os
import resource
import sys
import time
import traceback


def _version(dist):
    from importlib import metadata   # not `import numba`: the facade may import it lazily
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class Worker:
    def __init__(self):
        self.ort = self.np = self.sess = self.feed = self.outputs = None

    def do_import(self):
        t0 = time.perf_counter()
        import numpy
        import onnxruntime
        self.ort, self.np = onnxruntime, numpy
        return {"import_s": time.perf_counter() - t0, "version": onnxruntime.__version__,
                "runtime": "ortjit" if hasattr(onnxruntime, "_ortjit_version") else "onnxruntime",
                "ortjit_version": getattr(onnxruntime, "_ortjit_version", None),
                "module": os.path.dirname(onnxruntime.__file__), "numpy": numpy.__version__,
                "numba": _version("numba")}

    def do_load(self, model, feed, threads):
        with self.np.load(feed) as npz:
            self.feed = {k: npz[k] for k in npz.files}
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = None      # the previous model's session goes before the next is made
        t0 = time.perf_counter()
        self.sess = self.ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        return {"create_s": time.perf_counter() - t0}

    def do_run(self, n=1):
        run, feed = self.sess.run, self.feed
        t0 = time.perf_counter()
        for _ in range(n):
            outputs = run(None, feed)
        self.outputs = outputs
        return {"per_call_s": (time.perf_counter() - t0) / n, "n": n}

    def do_dump(self, dir):
        os.makedirs(dir, exist_ok=True)
        names = [o.name for o in self.sess.get_outputs()]
        files = []
        for i, out in enumerate(self.outputs):
            if isinstance(out, list) and out and isinstance(out[0], dict):   # ZipMap: rows of {label: p}
                out = [[row[k] for k in sorted(row)] for row in out]
            files.append(os.path.join(dir, f"out_{i}.npy"))
            self.np.save(files[-1], self.np.asarray(out), allow_pickle=False)
        return {"files": files, "names": names}

    def do_rss(self):
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20}


def main():
    # Replies go to a private copy of stdout; fd 1 itself is pointed at stderr, so whatever a
    # runtime prints (ORTJIT_SHOW_CODE, native logs) cannot corrupt the protocol.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    worker = Worker()
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            break
        try:
            reply = getattr(worker, f"do_{cmd}")(**request)
        except BaseException as e:   # noqa: BLE001 - any failure is data for the report
            traceback.print_exc()
            reply = {"error": f"{type(e).__name__}: {e}".strip()[:2000]}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
