"""Execution plans: for one input-shape signature, the ordered kernel calls with every
intermediate buffer's shape known and its storage assigned (reused by liveness).

Building a plan walks the optimized graph once: nodes whose inputs are all known at plan
time (constants, or values computed from input shapes such as Shape -> Gather -> Concat)
are evaluated there and become constants of the plan; every other node becomes a Step
with a compiled kernel. A second run with the same shapes compiles nothing and allocates
only the outputs it returns.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import onnx_ir as ir

from . import codecache, compile_helper, config, irutil, jit, kernel_cache, progress, subgraph
from .errors import InvalidGraph, OrtjitError, RuntimeException
from .ops.base import Info, NeedsRuntimeValue
from .ops.scratch import scratch


@dataclass
class Step:
    name: str            # node name
    op_type: str
    fn: object
    ins: list            # slot index per input (None: omitted optional input)
    outs: list           # slot index per output
    mode: str            # 'write' or 'return'
    out_infos: list
    source: str | None = None   # generated kernel source, when the kernel is generated
    in_infos: list = field(default_factory=list)   # Info per present input (for the profile)


@dataclass
class Plan:
    input_slots: list            # slot per graph input, in feed order
    output_slots: list           # slot per graph output
    output_fresh: list           # output allocated per run (write mode) -> returned as is
    steps: list
    template: list               # slot -> constant array, preallocated buffer, or None
    out_infos: list              # Info per graph output
    arena_bytes: int = 0
    build_seconds: float = 0.0
    stats: dict = field(default_factory=dict)
    # held while a run uses the plan's buffers; a concurrent run uses another plan (model.py)
    busy: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    runner_source: str = field(default="", repr=False, compare=False)
    _runner: object = field(default=None, repr=False, compare=False)

    def run(self, inputs: list, stop=None, profile=None) -> list:
        if stop is not None or profile is not None or len(inputs) != len(self.input_slots):
            return self._run_checked(inputs, stop, profile)
        if self._runner is None:
            return self._first_run(inputs)
        return self._runner(inputs)

    def _first_run(self, inputs: list) -> list:
        """The first run compiles or loads each kernel as it reaches it. It runs the plan's
        code with a hook before each step, which moves a progress bar (shown if that takes
        more than a moment) and, once a kernel had to be compiled, may start a helper
        process compiling the later ones (compile_helper.py)."""
        bar = progress.Progress(len(self.steps), "ortjit: compiling kernels") if progress.wanted(sys.stderr) else None
        first = compile_helper.FirstRun(self, inputs, bar)
        try:
            with bar if bar is not None else contextlib.nullcontext():
                # the step-by-step loop, not a generated function: compiling one for a
                # single run cost as much as the loop's bookkeeping saves (0.2 ms for one
                # node, more for hundreds)
                outs = self._run_checked(inputs, None, None, at=first.at)
        finally:
            first.close()
        self._make_runner()
        return outs

    def _make_runner(self):
        """The plan as one generated Python function (as TorchInductor's wrapper code): the
        kernel calls in order with the values in local variables, so that a run pays for no
        per-step bookkeeping. Its source is self.runner_source (shown with ORTJIT_SHOW_CODE)."""
        source, namespace = _render_runner(self)
        exec(kernel_cache.compiled(source, "<ortjit plan runner>"), namespace)
        self.runner_source = source
        self._runner = namespace["run"]
        if config.showing_code():
            config.emit(source)
        return self._runner

    def _run_checked(self, inputs: list, stop, profile, at=None) -> list:
        """run() with a terminate flag checked before each step and / or per-step timings;
        at(k) is called before step k (the first run's hook)."""
        vals = self.template.copy()
        for slot, x in zip(self.input_slots, inputs):
            vals[slot] = x
        for slot, fresh, info in zip(self.output_slots, self.output_fresh, self.out_infos):
            if fresh:
                vals[slot] = np.empty(info.shape, info.dtype)
        for k, step in enumerate(self.steps):
            if at is not None:
                at(k)
            if stop is not None and stop():
                from .errors import Fail
                raise Fail("Exiting due to terminate flag being set to true.")
            t0 = time.perf_counter() if profile is not None else 0.0
            try:
                args = [None if i is None else vals[i] for i in step.ins]
                if step.mode == "write":
                    step.fn(*args, *[vals[o] for o in step.outs])
                else:
                    res = step.fn(*args)
                    if len(step.outs) == 1 and not isinstance(res, tuple):
                        res = (res,)
                    for o, r in zip(step.outs, res):
                        vals[o] = r
            except OrtjitError:
                raise
            except Exception as e:
                raise _failed(step, e) from e
            if profile is not None:
                profile.append((step, t0, time.perf_counter()))
        outs = []
        for slot, fresh in zip(self.output_slots, self.output_fresh):
            v = vals[slot]
            outs.append(v if fresh or not isinstance(v, np.ndarray) else v.copy())
        return outs

    def describe(self) -> str:
        lines = [f"plan: {len(self.steps)} kernel calls, arena {self.arena_bytes} bytes, "
                 f"built in {self.build_seconds * 1e3:.1f} ms"]
        for s in self.steps:
            shapes = ", ".join(str(list(i.shape)) if i.shape is not None else "?" for i in s.out_infos)
            kname = getattr(s.fn, "name", getattr(s.fn, "__name__", type(s.fn).__name__))
            lines.append(f"  {s.op_type:<20} {s.name:<30} -> {shapes}  [{kname}]")
        return "\n".join(lines)


def _render_runner(plan: Plan) -> tuple[str, dict]:
    """Source and namespace of run(inputs) -> outputs for a plan. Slot k lives in local v{k}
    once fed or returned by a step; constants and preallocated buffers are globals c{k};
    step k's kernel is f{k}. Outputs allocated per run are allocated first; a graph output
    that a return-mode kernel makes anew on every call (it says so with fn.fresh_outputs =
    True) is handed out as is when no other step reads it, it is not fed and it is not
    returned twice: nothing else can hold its memory. Other arrays are copied out."""
    ns = {"_empty": np.empty, "_ndarray": np.ndarray, "_tuple": tuple, "_isinstance": isinstance,
          "_OrtjitError": OrtjitError, "_failed": _failed, "_steps": plan.steps}
    local: set = set()

    def ref(slot):
        if slot is None:
            return "None"
        if slot in local:
            return f"v{slot}"
        ns[f"c{slot}"] = plan.template[slot]
        return f"c{slot}"

    lines = ["def run(inputs):"]
    if plan.input_slots:
        lines.append(f"    {', '.join(f'v{k}' for k in plan.input_slots)}, = inputs")
        local.update(plan.input_slots)
    for slot, fresh, info in zip(plan.output_slots, plan.output_fresh, plan.out_infos):
        if fresh:
            ns[f"shape{slot}"], ns[f"dtype{slot}"] = info.shape, info.dtype
            lines.append(f"    v{slot} = _empty(shape{slot}, dtype{slot})")
            local.add(slot)
    lines += ["    s = 0", "    try:"]
    for k, step in enumerate(plan.steps):
        ns[f"f{k}"] = jit.unwrap(step.fn)
        args = [ref(i) for i in step.ins]
        lines.append(f"        s = {k}  # {ascii(step.op_type)} {ascii(step.name)}")  # ascii: no line breaks
        if step.mode == "write":
            lines.append(f"        f{k}({', '.join(args + [ref(o) for o in step.outs])})")
            continue
        if len(step.outs) == 1:
            v = f"v{step.outs[0]}"
            lines += [f"        {v} = f{k}({', '.join(args)})",
                      f"        if _isinstance({v}, _tuple):",
                      f"            {v} = {v}[0]"]
        else:
            lines.append(f"        {', '.join(f'v{o}' for o in step.outs)}, = f{k}({', '.join(args)})")
        local.update(step.outs)
    if not plan.steps:
        lines.append("        pass")
    lines += ["    except _OrtjitError:", "        raise", "    except Exception as e:",
              "        raise _failed(_steps[s], e) from e"]
    read = {i for step in plan.steps for i in step.ins}
    made = {o for step in plan.steps if step.mode == "return" and getattr(step.fn, "fresh_outputs", False)
            for o in step.outs}
    outs = []
    for slot, fresh in zip(plan.output_slots, plan.output_fresh):
        owned = fresh or (slot in made and slot not in read and slot not in plan.input_slots
                          and plan.output_slots.count(slot) == 1)
        v = ref(slot)
        outs.append(v if owned else f"({v}.copy() if _isinstance({v}, _ndarray) else {v})")
    lines.append(f"    return [{', '.join(outs)}]")
    return "\n".join(lines) + "\n", ns


def _failed(step, e) -> RuntimeException:
    return RuntimeException(f"Non-zero status code returned while running {step.op_type} node. "
                            f"Name:'{step.name}' Status Message: {type(e).__name__}: {e}")


class _Slots:
    def __init__(self):
        self.index: dict = {}

    def __call__(self, value) -> int:
        if value not in self.index:
            self.index[value] = len(self.index)
        return self.index[value]


def build_plan(graph: ir.Graph, opsets: dict, feed_infos: dict, overridden: frozenset = frozenset(),
               captured: dict | None = None) -> Plan:
    """feed_infos: graph input name -> Info (shape, dtype) of what the caller feeds.
    captured: for a subgraph, the outer-scope Values it reads -> their Info; they are fed
    after the graph inputs, in this order."""
    t0 = time.perf_counter()
    written = codecache.written[0]
    slots = _Slots()
    infos: dict = {}
    static: dict = {}
    for v in graph.initializers.values():
        if v.name in overridden:
            continue
        arr = irutil.initializer_value(v)
        infos[v] = irutil.const_info(arr)
        static[slots(v)] = arr
    input_slots = []
    for v in graph.inputs:
        if v.name in feed_infos:
            infos[v] = feed_infos[v.name]
            input_slots.append(slots(v))
    for v, info in (captured or {}).items():
        infos[v] = info
        input_slots.append(slots(v))
    steps = []
    for node in graph:
        op, opset = irutil.op_for(node, opsets)
        ins = [infos.get(v) if v is not None else None for v in node.inputs]
        ctx = irutil.context(node, opset, ins, opsets)
        present = [i for i in ins if i is not None]
        in_slots = [slots(v) if v is not None else None for v in node.inputs]
        outer = subgraph.captured_values(node)
        dynamic = op.dynamic or outer or any(i.dynamic for i in present)
        if not dynamic and not op.nondeterministic and (all(i.static for i in present) or op.shape_only):
            args = [None if i is None else i.value if i.static else _shape_stub(i) for i in ins]
            outs = op.evaluate(ctx, args)
            for v, arr in zip(node.outputs, outs):
                infos[v] = irutil.const_info(arr)
                static[slots(v)] = arr
            continue
        if not dynamic:
            try:
                out_infos = op.infer(ctx)
                fn = op.kernel(ctx)
            except NeedsRuntimeValue:
                dynamic = True
        if dynamic:
            for v in outer:
                if v not in infos:
                    raise InvalidGraph(f"{node.op_type} node '{ctx.name}': a subgraph reads '{v.name}', "
                                       "which is not defined before the node")
            fn = DynamicStep(op, node, opset, opsets, outer)
            out_infos = [Info(None, irutil.numpy_dtype(v), dynamic=True) for v in node.outputs]
            in_slots += [slots(v) for v in outer]
        for v, info in zip(node.outputs, out_infos):
            infos[v] = Info(info.shape, info.dtype, dynamic=info.dynamic)
        mode = "return" if dynamic else op.mode
        steps.append(Step(ctx.name, node.op_type, fn, in_slots, [slots(v) for v in node.outputs], mode,
                          out_infos, getattr(fn, "source", None), present))
    output_slots = [slots(v) for v in graph.outputs]
    out_infos = [infos[v] for v in graph.outputs]
    produced_by_write = {o for s in steps if s.mode == "write" for o in s.outs}
    output_fresh = [s in produced_by_write and s not in input_slots and output_slots.count(s) == 1
                    for s in output_slots]
    template: list = [None] * len(slots.index)
    for s, arr in static.items():
        template[s] = arr
    plan = Plan(input_slots, output_slots, output_fresh, steps, template, out_infos)
    _assign_buffers(plan)
    plan.build_seconds = time.perf_counter() - t0
    plan.stats["new_kernel_sources"] = codecache.written[0] - written  # the caches are cold
    if config.showing_code():
        config.emit(plan.describe())
    return plan


def _shape_stub(info: Info):
    """A zero-size-in-memory array with the right shape and dtype, for shape-only ops."""
    return np.broadcast_to(np.zeros((), info.dtype if isinstance(info.dtype, np.dtype) else np.float32), info.shape)


def _assign_buffers(plan: Plan) -> None:
    """Give every intermediate written by a kernel a buffer, reusing buffers whose values are dead."""
    n = len(plan.steps)
    last_use: dict = {}
    for k, step in enumerate(plan.steps):
        for i in step.ins:
            if i is not None:
                last_use[i] = k
        for o in step.outs:
            last_use.setdefault(o, k)
    for s in plan.output_slots:
        last_use[s] = n
    # a value returned by a 'return' step may alias its inputs: keep those alive as long
    for step in reversed(plan.steps):
        if step.mode == "return":
            end = max(last_use.get(o, 0) for o in step.outs)
            for i in step.ins:
                if i is not None:
                    last_use[i] = max(last_use.get(i, 0), end)
    outputs = set(plan.output_slots)
    views, in_place, infos = _concat_views(plan, outputs)
    for slot, (root, _) in views.items():   # the Concat's buffer lives while any part is read
        last_use[root] = max(last_use.get(root, 0), last_use.get(slot, 0))
    free: list = []   # raw uint8 blocks not holding a live value
    held: dict = {}   # slot -> block
    total = 0

    def block_for(need):
        nonlocal total
        fits = [j for j, b in enumerate(free) if b.nbytes >= need]
        if fits:  # the smallest free block that fits (by position: arrays do not compare with ==)
            return free.pop(min(fits, key=lambda j: free[j].nbytes))
        total += need
        return np.empty(need, np.uint8)

    for k, step in enumerate(plan.steps):
        if step.mode == "write":
            for o, info in zip(step.outs, step.out_infos):
                root = views[o][0] if o in views else o
                if root in outputs or root in held:
                    continue
                if np.dtype(info.dtype) == object:  # references cannot live in a byte arena
                    plan.template[o] = np.empty(info.shape, object)
                    continue
                if root is not o or root in infos:   # a Concat's output and the views of its parts
                    held[root] = block = block_for(_nbytes(infos[root]))
                    for slot in [root] + [v for v, (r, _) in views.items() if r == root]:
                        where = views[slot][1] if slot in views else 0
                        plan.template[slot] = plan.template[root][where] if isinstance(where, tuple) \
                            else _view(block, where, infos[slot])
                    continue
                held[o] = block = block_for(_nbytes(info))
                plan.template[o] = _view(block, 0, info)
        for s in list(held):
            if last_use.get(s, n) <= k:
                free.append(held.pop(s))
    plan.arena_bytes = total
    plan.steps = [step for k, step in enumerate(plan.steps) if k not in in_place]
    plan.stats["concats_in_place"] = len(in_place)


def _nbytes(info: Info) -> int:
    return max(int(np.prod(info.shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize, 1)


def _view(block: np.ndarray, start: int, info: Info) -> np.ndarray:
    count = int(np.prod(info.shape, dtype=np.int64))
    return block[start:start + count * np.dtype(info.dtype).itemsize].view(info.dtype).reshape(info.shape)


CONCAT_APART = True   # Concats whose parts lie apart also in place (tests, A/Bs: False)


def _through_scratch(fn):
    """fn(*ins, y) for a kernel that needs y contiguous, given a y whose images lie apart:
    into scratch, then copied where y lies (as the Concat would have copied it)."""
    @functools.wraps(fn)   # its attributes too (source, epilogue) for explain and the profile
    def through_scratch(*args):
        y = args[-1]
        tmp = scratch("concat_part", y.size, y.dtype).reshape(y.shape)
        fn(*args[:-1], tmp)
        y[...] = tmp
    through_scratch.strided_out = True
    return through_scratch


def _concat_views(plan: Plan, outputs: set) -> tuple[dict, set, dict]:
    """Concats that need not copy: each part is written by a kernel (or is itself such a
    Concat: DenseNet's blocks concatenate the previous Concat with one more layer) into a
    view of the output, and the Concat step goes.

    * Where the parts lie one after the other in the output's memory (nothing but size-1
      dims before the axis: a batch-1 channel Concat), any kernel writes its part, and a
      part may have other readers (the output's buffer then lives as long as they need it).
    * Where they do not (a channel Concat at batch > 1: each image's part lies apart from
      the next's), only parts that no other kernel reads (kernels expect their inputs
      contiguous; the fused elementwise loops would take them, but Numba's loops over
      arrays of any strides ran DenseNet-121's 2.6x slower at batch 8, more than the
      copies saved), nested only in Concats along the same axis. Kernels made to write such
      a view (`strided_out`: the Conv paths that write each image where it lies, Concat)
      write it; other single-output kernels write scratch and copy it there
      (_through_scratch), as the Concat would have, so that the others need not.

    Returns ({part's slot: (the outermost Concat's output slot, byte offset in it, or the
    index of its view in that output)}, indices of the Concat steps that go, {slot: Info}
    of every slot involved)."""
    made_by = {o: k for k, step in enumerate(plan.steps) for o in step.outs}
    reads: dict = {}   # slot -> how many steps read it
    for step in plan.steps:
        for i in step.ins:
            reads[i] = reads.get(i, 0) + 1
    inputs = set(plan.input_slots)
    views, in_place, infos = {}, set(), {}
    for k in reversed(range(len(plan.steps))):   # outer Concats first: inner ones nest in them
        step = plan.steps[k]
        axis = getattr(step.fn, "concat_axis", None)
        out = step.outs[0] if step.outs else None
        if axis is None or step.mode != "write" or out in outputs:
            continue
        info = step.out_infos[0]
        apart = int(np.prod(info.shape[:axis], dtype=np.int64)) != 1
        if apart and not CONCAT_APART:
            continue
        # nested in an outer Concat: contiguous in contiguous, or apart along the same axis
        root, where = views.get(out, (out, None))
        if where is None:   # the outermost: its own buffer
            where = (slice(None),) * axis + (slice(0, None),) if apart else 0
        if np.dtype(info.dtype) == object or None in step.ins or len(set(step.ins)) != len(step.ins) or \
                isinstance(where, tuple) != apart or (apart and len(where) != axis + 1):
            continue
        parts = []
        for i in step.ins:
            p = made_by.get(i)
            maker = plan.steps[p] if p is not None else None
            if maker is None or maker.mode != "write" or i in outputs or i in inputs or i in views:
                break
            if apart and (reads[i] > 1 or not (getattr(maker.fn, "strided_out", False) or len(maker.outs) == 1)):
                break
            parts.append(maker.out_infos[maker.outs.index(i)])
        else:
            if apart:   # a kernel that needs its output contiguous writes scratch, then copies
                for i in step.ins:
                    maker = plan.steps[made_by[i]]
                    if not getattr(maker.fn, "strided_out", False):
                        plan.steps[made_by[i]] = replace(maker, fn=_through_scratch(maker.fn))
            infos[out] = info
            row = int(np.prod(info.shape[axis + 1:], dtype=np.int64)) * np.dtype(info.dtype).itemsize
            offset, start = (0, where[axis].start) if apart else (where, 0)
            for i, part in zip(step.ins, parts):
                size = part.shape[axis]
                views[i] = (root, (slice(None),) * axis + (slice(start, start + size),) if apart else offset)
                infos[i] = part
                offset, start = offset + size * row, start + size
            in_place.add(k)
    return views, in_place, infos


class PlanCache:
    """A bounded LRU of plans keyed by the input shape signature."""

    def __init__(self, capacity: int = 8):
        self.capacity = max(1, int(capacity))
        self._plans: OrderedDict = OrderedDict()

    def get(self, key):
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def put(self, key, plan):
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.capacity:
            self._plans.popitem(last=False)

    def __len__(self):
        return len(self._plans)

    def values(self):
        return list(self._plans.values())


class DynamicStep:
    """A node whose outputs cannot be planned ahead: their shapes depend on values known
    only at run time (Reshape by a computed shape, NonZero), its inputs are such values, it
    takes or gives sequences/optionals, or it runs subgraphs. Its kernel is built at run
    time from the actual inputs and kept for the next call with the same shapes, dtypes
    and the same values of the inputs it read (ctx.value)."""

    MAX_KERNELS = 16

    def __init__(self, op, node, opset: int, opsets: dict, captured: list):
        self.op, self.node, self.opset, self.opsets = op, node, opset, opsets
        self.n_inputs = len(node.inputs)
        self.captured = captured
        self.kernels: OrderedDict = OrderedDict()
        self.name = f"dynamic_{node.op_type}"

    def __call__(self, *args):
        key = tuple(subgraph.signature(a) for a in args)
        entries = self.kernels.get(key)
        fn = out_infos = None
        for read, values, k_fn, k_infos in entries or ():
            if all(_same_value(args[i], v) for i, v in zip(read, values)):
                fn, out_infos = k_fn, k_infos
                break
        if fn is None:
            fn, out_infos, read = self._build(args)
            if entries is None:
                entries = self.kernels[key] = []
                while len(self.kernels) > self.MAX_KERNELS:
                    self.kernels.popitem(last=False)
            entries.insert(0, (read, [_snapshot(args[i]) for i in read], fn, out_infos))
            del entries[self.MAX_KERNELS:]
        if self.op.mode == "write" and not self.op.shape_only:
            outs = [np.empty(i.shape, i.dtype) for i in out_infos]
            fn(*args, *outs)
            return tuple(outs)
        return fn(*args)

    def _build(self, args):
        infos = [None if a is None else subgraph.value_info(a) for a in args[:self.n_inputs]]
        ctx = irutil.context(self.node, self.opset, infos, self.opsets)
        ctx.extra["runtime_values"] = args
        ctx.extra["captured"] = self.captured
        out_infos = self.op.infer(ctx)
        if self.op.shape_only:  # Shape, Size: no kernel, evaluated from the input's shape
            def fn(*args):
                return tuple(self.op.evaluate(ctx, list(args)))
        else:
            fn = self.op.kernel(ctx)
        return fn, out_infos, sorted(ctx.extra.get("read", ()))


def _snapshot(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _same_value(a, b) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.all((a == b) | ((a != a) & (b != b))))
    return a is b
