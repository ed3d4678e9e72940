"""Example models shipped with the package (made by scripts/make_examples.py)."""
import os

from ortjit.errors import NoSuchFile


def get_example(name: str) -> str:
    """The full path of a shipped example model: 'sigmoid.onnx', 'mul_1.onnx', 'logreg_iris.onnx'."""
    path = os.path.join(os.path.dirname(__file__), name)
    if not os.path.exists(path):
        raise NoSuchFile(f"Unable to find example '{name}'; available: {', '.join(list_examples())}")
    return path


def list_examples() -> list:
    return sorted(f for f in os.listdir(os.path.dirname(__file__)) if f.endswith(".onnx"))
