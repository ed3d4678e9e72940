"""Start-up: modules our dependencies import but a run never needs stay unloaded until used."""
import subprocess
import sys
import textwrap

import pytest


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_session_and_its_first_run_leave_sympy_and_scipy_linalg_unloaded():
    out = _python("""
        import sys
        import numpy as np
        import onnxruntime as ort
        sess = ort.InferenceSession(ort.datasets.get_example("sigmoid.onnx"))
        x = np.zeros([3, 4, 5], np.float32)
        print(float(sess.run(None, {"x": x})[0].ravel()[0]))
        for name in ("sympy", "onnx_ir._symbolic_shapes", "scipy.linalg"):
            module = sys.modules.get(name)
            print(name, "absent" if module is None else type(module).__name__)
    """).split("\n")
    assert out[0] == "0.5"
    for line in out[1:4]:
        assert line.split()[1] in ("absent", "_Deferred"), line


def test_sympy_works_for_whoever_uses_it_after_import():
    out = _python("""
        import onnxruntime
        import onnx_ir as ir
        print(ir.SymbolicDim("N") * 2)
        import sympy
        from sympy.core import Expr
        print(sympy.Symbol("x") + 1, isinstance(sympy.Symbol("y"), Expr), type(sympy).__name__)
    """)
    assert out.split("\n")[:2] == ["2*N", "x + 1 True module"]


def test_scipy_linalg_works_for_whoever_uses_it_after_a_run():
    pytest.importorskip("scipy")
    out = _python("""
        import numpy as np
        import onnxruntime as ort
        sess = ort.InferenceSession(ort.datasets.get_example("sigmoid.onnx"))
        sess.run(None, {"x": np.zeros([3, 4, 5], np.float32)})
        import scipy.linalg
        from scipy.linalg import solve
        print(scipy.linalg.inv(np.eye(2) * 2)[0, 0], solve(np.eye(2), np.ones(2))[1])
    """)
    assert out.split() == ["0.5", "1.0"]


def test_threads_first_using_sympy_at_once_all_get_the_whole_module():
    out = _python("""
        import threading
        import onnxruntime
        results = []
        def use():
            import sympy
            results.append(str(sympy.Matrix([[1, 2], [3, 4]]).det()))
        threads = [threading.Thread(target=use) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(" ".join(results))
    """)
    assert out.split() == ["-2"] * 6
