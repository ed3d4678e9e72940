"""Write the example models shipped in onnxruntime/datasets (as onnxruntime ships them).

    python scripts/make_examples.py

sigmoid.onnx     one Sigmoid node, input 'x' float [3,4,5], output 'y'
mul_1.onnx       Y = X * W, X float [3,2], W a constant [[1,2],[3,4],[5,6]]
logreg_iris.onnx a one-vs-rest logistic regression fitted on iris with scikit-learn,
                 written as the LinearClassifier -> Normalizer -> ZipMap graph that
                 skl2onnx emits (the graph is built here with onnx.helper; skl2onnx is
                 not needed)

The output is deterministic: fixed solver, coefficients rounded to 6 decimals, and no
timestamps in the files. scikit-learn is only needed to (re)fit logreg_iris.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "onnxruntime", "datasets")
PRODUCER = "ortjit scripts/make_examples.py"


def _model(graph, opsets: dict, doc: str) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name=PRODUCER, doc_string=doc)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def sigmoid() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid")], "sigmoid",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])])
    return _model(graph, {"": 13}, "y = sigmoid(x)")


def mul_1() -> onnx.ModelProto:
    w = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "W"], ["Y"], name="mul_1")], "mul_1",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 2])],
        [numpy_helper.from_array(w, "W")])
    return _model(graph, {"": 13}, "Y = X * W, W = [[1,2],[3,4],[5,6]]: X = W gives the squares")


def fit_iris():
    """Coefficients (3, 4) and intercepts (3,) of a one-vs-rest logistic regression on iris.

    One-vs-rest is what LinearClassifier(LOGISTIC) -> Normalizer(L1) computes exactly:
    a sigmoid per class, then the row scaled to sum to 1 (sklearn's predict_proba for ovr).
    """
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    x, y = load_iris(return_X_y=True)
    clf = OneVsRestClassifier(LogisticRegression(solver="lbfgs", max_iter=1000)).fit(x, y)
    coef = np.vstack([e.coef_ for e in clf.estimators_]).round(6)
    intercepts = np.concatenate([e.intercept_ for e in clf.estimators_]).round(6)
    return coef, intercepts, [int(c) for c in clf.classes_]


def logreg_iris() -> onnx.ModelProto:
    coef, intercepts, classes = fit_iris()
    nodes = [
        helper.make_node("LinearClassifier", ["float_input"], ["output_label", "probability_tensor"],
                         name="LinearClassifier", domain="ai.onnx.ml",
                         classlabels_ints=classes, coefficients=coef.ravel().tolist(),
                         intercepts=intercepts.tolist(), multi_class=1, post_transform="LOGISTIC"),
        helper.make_node("Normalizer", ["probability_tensor"], ["probabilities"], name="Normalizer",
                         domain="ai.onnx.ml", norm="L1"),
        helper.make_node("ZipMap", ["probabilities"], ["output_probability"], name="ZipMap",
                         domain="ai.onnx.ml", classlabels_int64s=classes),
    ]
    prob_type = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, None)))
    graph = helper.make_graph(
        nodes, "logreg_iris",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output_label", TensorProto.INT64, [None]),
         helper.make_value_info("output_probability", prob_type)])
    return _model(graph, {"": 13, "ai.onnx.ml": 1},
                  "One-vs-rest logistic regression on the iris data set (scikit-learn), "
                  "classes 0 setosa, 1 versicolor, 2 virginica")


def main(out_dir: str = OUT_DIR) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, make in (("sigmoid.onnx", sigmoid), ("mul_1.onnx", mul_1), ("logreg_iris.onnx", logreg_iris)):
        path = os.path.normpath(os.path.join(out_dir, name))
        with open(path, "wb") as f:
            f.write(make().SerializeToString(deterministic=True))
        written.append(path)
        print("wrote", path)
    return written


if __name__ == "__main__":
    main()
