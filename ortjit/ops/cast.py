"""Cast and CastLike. Between numeric and bool types a cast is an elementwise step of a
generated kernel (fusable). Casts involving strings or the ml_dtypes types (bfloat16,
float8, float4, int4, int2) run through numpy with the rules of the ONNX spec: float 8
saturation, float8e8m0 rounding modes, string parsing and formatting. float 6 and float 4
have no infinity or NaN: ml_dtypes' conversion saturates by itself, as onnx's reference."""
from __future__ import annotations

import numpy as np

from ..codegen.elementwise import SCALAR_TYPE
from .base import Elementwise, Info, Op
from .registry import register


def _is_plain(dtype) -> bool:
    return isinstance(dtype, np.dtype) and dtype in SCALAR_TYPE


def _is_small_float(dtype: np.dtype) -> bool:
    return dtype.name.startswith(("float8", "float6", "float4"))


_NARROW_INTS = ("int4", "uint4", "int2", "uint2")
_SPECIAL = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "nan": np.nan, "+nan": np.nan, "-nan": np.nan}


def _from_strings(x: np.ndarray, to: np.dtype, saturate: bool, round_mode: str) -> np.ndarray:
    flat = [v.decode() if isinstance(v, bytes) else str(v) for v in x.ravel()]
    try:
        if to.kind in "iu" or to == np.bool_:  # integers as written; "100.5" to an integer gives 100
            values = [int(s) if s.strip().lstrip("+-").isdigit() else int(float(s)) for s in flat]
            if to == np.uint64:
                return np.array([v % 2**64 for v in values], dtype=object).astype(to).reshape(x.shape)
            return cast_array(np.array(values, np.int64).reshape(x.shape), to)  # wraps as integer casts do
        values = [_SPECIAL.get(s.strip().lower(), None) for s in flat]
        floats = np.array([float(s) if v is None else v for s, v in zip(flat, values)], np.float64)
    except (ValueError, OverflowError) as e:  # OverflowError: int(float("inf"))
        from ..errors import InvalidArgument
        raise InvalidArgument(f"Cast: a string is not a number of type {to}: {e}") from None
    return cast_array(floats.reshape(x.shape), to, saturate, round_mode)


def _to_strings(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.bool_:
        return np.array(["1" if v else "0" for v in x.ravel()], dtype=object).reshape(x.shape)
    if not _is_plain(x.dtype):
        x = x.astype(np.float32)
    return x.astype(str).astype(object)  # shortest round-trip text, as numpy prints them


def _to_e8m0(x: np.ndarray, to: np.dtype, saturate: bool, round_mode: str) -> np.ndarray:
    """float8e8m0 holds only powers of two 2**(b - 127), b in 0..254 (255 is NaN). The
    spec leaves negative values open: their magnitude is converted, as onnx's reference
    does (it reads the exponent bits alone). Unlike the reference, infinities saturate and
    zero is NaN without saturation, as the spec's table says."""
    v = np.abs(np.asarray(x, np.float64))
    with np.errstate(all="ignore"):
        mant, exp = np.frexp(v)  # v = mant * 2**exp, mant in [0.5, 1)
        e = exp.astype(np.int64) - 1  # v = (2 * mant) * 2**e, 2 * mant in [1, 2)
        m = 2 * mant
        if round_mode == "up":
            e = e + (m > 1)
        elif round_mode == "nearest":
            e = e + (m >= 1.5)
        elif round_mode != "down":
            raise ValueError(f"round_mode must be up, down or nearest, not {round_mode!r}")
        bits = e + 127
        bad = np.isnan(v)
        if saturate:
            bits = np.where(np.isinf(v) | (bits > 254), 254, bits)
            bits = np.where((v == 0) | (bits < 0), 0, bits)
        else:
            bad |= np.isinf(v) | (v == 0) | (bits > 254) | (bits < 0)
        bits = np.where(bad, 255, bits)
    return bits.astype(np.uint8).view(to)


def cast_array(x: np.ndarray, to: np.dtype, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == to:
        return x.copy()
    if x.dtype == object or x.dtype.kind in "SU":
        return _from_strings(x, to, saturate, round_mode)
    if to == object:
        return _to_strings(x)
    if to.name == "float8_e8m0fnu":
        return _to_e8m0(x.astype(np.float64), to, saturate, round_mode)
    if _is_small_float(to):
        # numpy's float types convert directly (one rounding, as the reference); integers
        # through float64, exact up to where every float 8 saturates anyway
        wide = x if x.dtype.kind == "f" and _is_plain(x.dtype) else x.astype(
            np.float64 if _is_plain(x.dtype) else np.float32)
        if saturate:
            top = float(__import__("ml_dtypes").finfo(to).max)
            wide = np.clip(wide, -top, top)  # infinities too; NaN stays NaN
        return wide.astype(to)
    if to == np.bool_:
        return x.astype(np.float32) != 0 if not _is_plain(x.dtype) else x.astype(np.bool_)
    if not _is_plain(x.dtype):  # ml_dtypes sources go through float32 (exact for all of them)
        x = x.astype(np.float32)
    if to.name in _NARROW_INTS:
        # to int4 / int2: as to any integer, high bits dropped (two's complement)
        info = __import__("ml_dtypes").iinfo(to)
        width = int(info.max - info.min + 1)
        with np.errstate(invalid="ignore"):  # NaN and infinities: undefined by the spec
            ints = np.trunc(x.astype(np.float64)).astype(np.int64) if x.dtype.kind == "f" else x.astype(np.int64)
        wrapped = (ints - info.min) % width + info.min
        return wrapped.astype(to)
    with np.errstate(all="ignore"):
        return x.astype(to)


class _Cast(Elementwise):
    def _exotic(self, ctx) -> bool:
        return not (_is_plain(ctx.inputs[0].dtype) and _is_plain(np.dtype(self.out_dtype(ctx))))

    def expr(self, ctx, a):
        return a[0]  # the conversion is the step's typed assignment

    def infer(self, ctx):
        if self._exotic(ctx):
            return [Info(tuple(ctx.inputs[0].shape), np.dtype(self.out_dtype(ctx)))]
        return super().infer(ctx)

    def kernel(self, ctx):
        if not self._exotic(ctx):
            return super().kernel(ctx)
        to = np.dtype(self.out_dtype(ctx))
        saturate = bool(ctx.attr("saturate", 1))
        mode = ctx.attr("round_mode", "up")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("up", "down", "nearest"):
            raise ctx.fail(f"round_mode must be 'up', 'down' or 'nearest', got {mode!r}")

        def run(x, *rest):
            out = rest[-1]
            out[...] = cast_array(x, to, saturate, mode)
        return run

    def evaluate(self, ctx, inputs):
        if self._exotic(ctx):
            return Op.evaluate(self, ctx, inputs)
        return super().evaluate(ctx, inputs)


@register("Cast")
class Cast(_Cast):
    def out_dtype(self, ctx):
        from ..dtypes import to_numpy
        return to_numpy(ctx.attr("to"))


@register("CastLike")
class CastLike(_Cast):
    """Only the type of target_type (input 1) matters: the output has the shape of input 0."""

    def out_dtype(self, ctx):
        return ctx.inputs[1].dtype

    def present_inputs(self, ctx):
        return [0]
