"""ortjit: a graph-compiler runtime for ONNX models.

    import ortjit
    model = ortjit.compile("model.onnx")          # load, optimize
    outputs = model.run({"X": x})                 # plans and kernels are built per shape
    print(model.explain())                        # passes, fused groups, kernels, plans
    ortjit.show_code()                            # print every generated kernel as it is built
"""
from .lazy_imports import defer as _defer

# before anything imports onnx_ir: see lazy_imports.py
_defer("sympy")
_defer("onnx_ir._symbolic_shapes")
_defer("scipy.linalg")

from .config import show_code  # noqa: E402,F401
from .errors import OrtjitError  # noqa: E402,F401

__version__ = "0.1.0"


def compile(model, **options):  # noqa: A001 - the verb users expect
    """Load and optimize a model (path, bytes or ModelProto); see CompiledModel for options."""
    from .model import CompiledModel
    return CompiledModel(model, **options)
