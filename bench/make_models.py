"""The benchmark's models and feeds, made here from scratch: random weights, no downloads.

    python bench/make_models.py [--out bench/.models] [--models REGEX] [--remake] [--list]

Writes MODEL.onnx per model and CASE.npz (the feed) per benchmark case (one model can have
several cases: the CNNs at batch 1 and 8, the scikit-learn models at batch 1 and 1000).
What each model needs to be made: "onnx" (numpy and onnx only: any environment), "torch"
(torch and onnxscript) or "sklearn" (scikit-learn and skl2onnx); compare.py runs this file
with its model-making venv's python when a case needs one of the last two, so the project's
own environment never gets them.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, ".models")
CNN_BATCH = 8    # the "larger batch": VGG-19 at 8 is about 1.5 s a call, still a few rounds
# Weight scale against He init, per CNN, picked so the final Softmax is not saturated (with
# gain 1, ResNet-50 and ShuffleNet put all the mass on one class, and a one-hot output agrees
# between any two runtimes): the agreement check then compares real probabilities.
CNN_GAIN = {"resnet50": 0.6, "shufflenet": 0.5, "inception_v2": 0.9, "bvlc_alexnet": 0.9}

# model -> (needs, group, {case: batch}). Groups drive the report's targets: "elementwise"
# cases are the ones held to the tighter 0.8 ratio, "overhead" is the per-call overhead one.
MODELS = {
    "one_node": ("onnx", "overhead", {"one_node": 1}),
    "mlp": ("onnx", "elementwise", {"mlp-b64": 64}),
    **{cnn: ("onnx", "cnn", {f"{cnn}-b1": 1, f"{cnn}-b{CNN_BATCH}": CNN_BATCH})
       for cnn in ["resnet50", "densenet121", "inception_v1", "inception_v2", "shufflenet",
                   "squeezenet", "vgg19", "bvlc_alexnet", "zfnet512"]},
    "bert": ("torch", "elementwise", {"bert-b2": 2}),
    "gpt2": ("torch", "elementwise", {"gpt2-b1": 1}),
    "random_forest": ("sklearn", "sklearn", {"random_forest-b1": 1, "random_forest-b1000": 1000}),
    "gradient_boosting": ("sklearn", "sklearn",
                          {"gradient_boosting-b1": 1, "gradient_boosting-b1000": 1000}),
    "scaler_logreg": ("sklearn", "sklearn", {"scaler_logreg-b1": 1, "scaler_logreg-b1000": 1000}),
}
# What the report says about each model (keyed by model, or by group for the CNNs and sklearn).
NOTES = {
    "one_node": "one_node: one Mul of two 3x2 float tensors, for the per-call overhead.",
    "mlp": "mlp-b64: 4 residual blocks of LayerNormalization, MatMul 256x1024 + bias, GELU in "
           "PyTorch's erf form, MatMul 1024x256 + bias, Add; batch 64; written with onnx.helper.",
    "cnn": "CNNs: the onnx wheel's light models (onnx/backend/test/data/light, opset 9) with random "
           "He-initialized weights as initializers in place of their ConstantOfShape weights (scaled "
           "per model so the final Softmax is not saturated); the batch dim made symbolic in one file "
           "(each Reshape target's leading 1 turned into 0, 'copy that dim'), which both runtimes "
           f"accept, and run at batch 1 and batch {CNN_BATCH}.",
    "bert": "bert-b2: a BERT-style encoder, 4 layers, hidden 256, 4 heads, FFN 1024, erf GELU, "
            "post-LayerNorm, a padding mask input; seq 128, batch 2; exported from PyTorch "
            "(torch.onnx.export, dynamo exporter, opset 18).",
    "gpt2": "gpt2-b1: a GPT-2-style decoder (the whole prompt, no KV cache), 4 layers, hidden 256, "
            "4 heads, tanh GELU, pre-LayerNorm, causal mask, LM head tied to a 4096-token "
            "embedding; seq 128, batch 1; exported as bert is.",
    "sklearn": "scikit-learn through skl2onnx (ai.onnx.ml, no ZipMap): random forest (100 trees, "
               "depth 10), gradient boosting (100 trees, depth 3), StandardScaler + "
               "LogisticRegression; 20 features, 3 classes, fitted on a random problem; batch 1 "
               "and 1000.",
}
# Not a case: the "other model" a process runs before the one it measures cold (compare.py).
WARMUP = "warmup"


def notes(selected: list[dict]) -> list[str]:
    keys = {c["model"] for c in selected} | {c["group"] for c in selected}
    return [text for key, text in NOTES.items() if key in keys]


def cases(pattern: str = ".*") -> list[dict]:
    """Every case whose name matches pattern (re.search), in table order."""
    return [dict(case=case, model=model, needs=needs, group=group, batch=batch)
            for model, (needs, group, batches) in MODELS.items()
            for case, batch in batches.items() if re.search(pattern, case)]


# ---- models made with onnx.helper alone

def make_warmup(batches):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warmup",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return _model(g, 17), {WARMUP: {"x": np.ones(4, np.float32)}}


def make_one_node(batches):
    """One Mul on two tiny inputs: what a call costs when there is no work."""
    from onnx import TensorProto, helper
    x, y, z = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [3, 2]) for n in "XYZ")
    g = helper.make_graph([helper.make_node("Mul", ["X", "Y"], ["Z"])], "one_node", [x, y], [z])
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((3, 2)).astype(np.float32) for n in "XY"}
    return _model(g, 17), {case: feed for case in batches}


def make_mlp(batches, dim=256, hidden=1024, blocks=4):
    """Residual MLP blocks: x + W2 gelu(W1 LayerNorm(x) + b1) + b2, GELU in PyTorch's erf form
    (Div, Erf, Add, Mul, Mul): the elementwise chains that fusion is for."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits, nodes, x = [], [], "x"

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    const("sqrt2", np.sqrt(2.0)), const("one", 1.0), const("half", 0.5)
    for i in range(blocks):
        p = f"b{i}_"
        w1 = const(p + "w1", rng.standard_normal((dim, hidden)) / np.sqrt(dim))
        w2 = const(p + "w2", rng.standard_normal((hidden, dim)) / np.sqrt(hidden))
        b1, b2 = const(p + "b1", rng.uniform(-0.1, 0.1, hidden)), const(p + "b2", rng.uniform(-0.1, 0.1, dim))
        gamma, beta = const(p + "gamma", rng.uniform(0.5, 1.5, dim)), const(p + "beta", rng.uniform(-0.1, 0.1, dim))
        steps = [("LayerNormalization", [x, gamma, beta], "ln"), ("MatMul", [p + "ln", w1], "mm1"),
                 ("Add", [p + "mm1", b1], "h"), ("Div", [p + "h", "sqrt2"], "d"), ("Erf", [p + "d"], "e"),
                 ("Add", [p + "e", "one"], "e1"), ("Mul", [p + "h", p + "e1"], "he"),
                 ("Mul", [p + "he", "half"], "g"), ("MatMul", [p + "g", w2], "mm2"),
                 ("Add", [p + "mm2", b2], "o"), ("Add", [x, p + "o"], "out")]
        nodes += [helper.make_node(op, ins, [p + out], **({"axis": -1} if op == "LayerNormalization" else {}))
                  for op, ins, out in steps]
        x = p + "out"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", dim])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", dim])], inits)
    return _model(g, 17), {case: {"x": rng.standard_normal((b, dim)).astype(np.float32)}
                           for case, b in batches.items()}


def make_cnn(name, batches):
    """One of the onnx wheel's light models (the model zoo's CNNs with every weight a
    ConstantOfShape of 0.02) with real-looking random weights as initializers, and a symbolic
    batch: the leading 1 of every Reshape target becomes 0 ("copy that dim"), so one file
    serves batch 1 and batch 8. Initializers are not graph inputs (as exporters write them
    today): listed as inputs, ONNX Runtime would treat them as overridable and not fold them."""
    import onnx
    from onnx import numpy_helper
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    model = onnx.load(os.path.join(light, f"light_{name}.onnx"))
    g, rng, gain = model.graph, np.random.default_rng(0), CNN_GAIN.get(name, 1.0)
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers = {}
    for node in g.node:
        for i, v in enumerate(node.input):
            consumers.setdefault(v, []).append((node, i))

    def multiplies(value):   # a per-channel factor: BN scale or variance, or a Mul (via Unsqueeze)
        for node, i in consumers.get(value, []):
            if (node.op_type == "BatchNormalization" and i in (1, 4)) or node.op_type == "Mul" \
                    or (node.op_type == "Unsqueeze" and multiplies(node.output[0])):
                return True
        return False

    weights, keep = {}, []
    for node in g.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in inits[node.input[0]])
            out = node.output[0]
            if len(shape) >= 2:     # He init keeps activations of order 1 through deep stacks
                w = rng.standard_normal(shape) * gain * np.sqrt(2.0 / np.prod(shape[1:]))
            elif multiplies(out):
                w = rng.uniform(0.5, 1.5, shape)
            else:
                w = rng.uniform(-0.1, 0.1, shape)
            weights[out] = w.astype(np.float32)
            continue
        if node.op_type == "Reshape" and node.input[1] in inits and node.input[0] not in weights:
            target = inits[node.input[1]].copy()
            if target[0] == 1:
                target[0] = 0
                inits[node.input[1]] = target
        keep.append(node)
    used = {v for n in keep for v in n.input}
    inits = {k: v for k, v in inits.items() if k in used}
    data_inputs = [vi for vi in g.input if vi.name in used and vi.name not in inits and vi.name not in weights]
    for vi in data_inputs + list(g.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    new = onnx.helper.make_graph(keep, name, data_inputs, list(g.output),
                                 [numpy_helper.from_array(a, k) for k, a in {**inits, **weights}.items()])
    model = onnx.helper.make_model(new, opset_imports=model.opset_import, producer_name="ortjit-bench")
    model.ir_version = 7    # initializers need not be inputs from IR 4 on; 7 is opset 9's era
    feeds = {}
    for case, b in batches.items():
        feeds[case] = {vi.name: rng.standard_normal(
            [b] + [d.dim_value for d in vi.type.tensor_type.shape.dim[1:]]).astype(np.float32)
            for vi in data_inputs}
    return model, feeds


# ---- models exported from PyTorch

def _transformer(vocab, dim, heads, ff, layers, seq, causal):
    """BERT-style (post-LayerNorm, erf GELU, padding mask input) or GPT-2-style (pre-LayerNorm,
    tanh GELU, causal mask, final LayerNorm and a tied LM head) blocks, written out in plain
    ops so the exporter sees MatMul / Softmax / LayerNorm as a user's model has them."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(approximate="tanh" if causal else "none"),
                                    nn.Linear(ff, dim))

        def attention(self, x, bias):
            b, t, _ = x.shape
            q, k, v = (z.reshape(b, t, heads, dim // heads).transpose(1, 2)
                       for z in self.qkv(x).split(dim, dim=-1))
            att = (q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5 + bias
            return self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, dim))

        def forward(self, x, bias):
            if causal:
                x = x + self.attention(self.ln1(x), bias)
                return x + self.ff(self.ln2(x))
            x = self.ln1(x + self.attention(x, bias))
            return self.ln2(x + self.ff(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
            self.ln = nn.LayerNorm(dim)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.register_buffer("causal", torch.full((seq, seq), -1e4).triu(1))

        def forward(self, ids, mask=None):
            t = ids.shape[1]
            x = self.tok(ids) + self.pos(torch.arange(t))
            if causal:
                bias = self.causal[:t, :t]
            else:
                x = self.ln(x)
                bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -1e4
            for block in self.blocks:
                x = block(x, bias)
            return self.ln(x) @ self.tok.weight.T if causal else x

    torch.manual_seed(0)
    return Model().eval()


def _export(module, args, names):
    import onnx
    import torch
    with torch.no_grad():
        prog = torch.onnx.export(module, args, input_names=names, dynamo=True, opset_version=18)
    return onnx.load_from_string(prog.model_proto.SerializeToString())


def make_bert(batches, seq=128):
    feeds, rng = {}, np.random.default_rng(0)
    for case, b in batches.items():
        mask = np.ones((b, seq), np.int64)
        mask[-1, seq * 3 // 4:] = 0     # the last sequence padded: the mask does something
        feeds[case] = {"input_ids": rng.integers(0, 1000, (b, seq)), "attention_mask": mask}
    module = _transformer(vocab=1000, dim=256, heads=4, ff=1024, layers=4, seq=seq, causal=False)
    import torch
    f = next(iter(feeds.values()))
    model = _export(module, (torch.from_numpy(f["input_ids"]), torch.from_numpy(f["attention_mask"])),
                    ["input_ids", "attention_mask"])
    return model, feeds


def make_gpt2(batches, seq=128):
    rng = np.random.default_rng(0)
    feeds = {case: {"input_ids": rng.integers(0, 4096, (b, seq))} for case, b in batches.items()}
    module = _transformer(vocab=4096, dim=256, heads=4, ff=1024, layers=4, seq=seq, causal=True)
    import torch
    model = _export(module, (torch.from_numpy(next(iter(feeds.values()))["input_ids"]),), ["input_ids"])
    return model, feeds


# ---- scikit-learn through skl2onnx

def _sklearn(estimator, batches, features=20):
    """Fit on a random classification problem; convert without ZipMap (plain tensors out),
    ai.onnx.ml opset 3, the TreeEnsemble version every runtime has."""
    import onnx
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    x, y = make_classification(n_samples=2000, n_features=features, n_informative=10, n_classes=3,
                               random_state=0)
    x = x.astype(np.float32)
    estimator.fit(x, y)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    model = to_onnx(estimator, x[:1], options={id(final): {"zipmap": False}},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    opsets = {o.domain: o.version for o in model.opset_import}   # skl2onnx may list "" twice
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets.items())
    name = model.graph.input[0].name
    rng = np.random.default_rng(0)
    return model, {case: {name: x[rng.integers(0, len(x), b)]} for case, b in batches.items()}


def make_random_forest(batches):
    from sklearn.ensemble import RandomForestClassifier
    return _sklearn(RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0), batches)


def make_gradient_boosting(batches):
    from sklearn.ensemble import GradientBoostingClassifier
    return _sklearn(GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0), batches)


def make_scaler_logreg(batches):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return _sklearn(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), batches)


def _model(graph, opset):
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="ortjit-bench")
    model.ir_version = 8
    return model


def make(model_name: str, out: str, remake: bool = False) -> None:
    """Write model_name's .onnx and its cases' .npz feeds into out, unless already there."""
    import onnx
    batches = {WARMUP: 1} if model_name == WARMUP else MODELS[model_name][2]
    paths = [os.path.join(out, f"{model_name}.onnx")] + [os.path.join(out, f"{c}.npz") for c in batches]
    if not remake and all(os.path.exists(p) for p in paths):
        return
    maker = globals().get(f"make_{model_name}")
    model, feeds = maker(batches) if maker else make_cnn(model_name, batches)
    os.makedirs(out, exist_ok=True)
    for case, feed in feeds.items():
        np.savez(os.path.join(out, f"{case}.npz"), **feed)
    tmp = paths[0] + ".tmp"     # written whole, then renamed: a killed run leaves no half model
    onnx.save(model, tmp)
    os.replace(tmp, paths[0])
    print(f"made {model_name}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--models", default=".*", help="regex over case names (as in --list)")
    ap.add_argument("--remake", action="store_true", help="make them again even if present")
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    args = ap.parse_args(argv)
    selected = cases(args.models)
    if args.list:
        for c in selected:
            print(f"{c['case']:<26} {c['group']:<12} needs {c['needs']}")
        return
    # Always: the warm-up model, and the one-node model that compare.py's start-up cost uses.
    for model_name in dict.fromkeys([WARMUP, "one_node"] + [c["model"] for c in selected]):
        make(model_name, args.out, args.remake)


if __name__ == "__main__":
    main()
