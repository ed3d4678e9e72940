"""Vectorizable float32 exp, tanh and erf for generated loops.

The PyPI llvmlite has no Intel SVML, so np.exp / np.tanh / math.erf inside a Numba loop are
scalar libm calls that stop LLVM from vectorizing the loop (shared/design.md: about 1.3 ns
an element against 0.16 ns for a polynomial). These are branch-free polynomial and rational
forms, only arithmetic, comparisons and one bit cast, so a loop calling them vectorizes.
Accuracy over float32 (tests/test_vmath.py checks a dense grid): exp within 1e-7, tanh
within 2e-7 and erf within 5e-7 relative (a few ulp).

SOURCE is pasted into each generated module that uses them (after codegen's header), so
the module stays self-contained and its content hash covers this code. The names map the
libm calls that codegen replaces in float32 steps.
"""
from __future__ import annotations

import re

# libm call in an expression -> the vectorizable function that replaces it in float32 steps
REPLACEMENTS = {"np.exp(": "_vexp(", "np.tanh(": "_vtanh(", "math.erf(": "_verf("}

SOURCE = '''from numba.extending import intrinsic as _intrinsic
from numba.core import types as _types
import llvmlite.ir as _llvm_ir


@_intrinsic
def _i32_as_f32(typingctx, i):
    """The float32 whose bits are the int32 i (no scalar view in Numba)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _llvm_ir.FloatType())
    return _types.float32(_types.int32), codegen


@numba.njit(inline="always", nogil=True, error_model="numpy")
def _vexp(x):
    # exp(x) = 2**n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2; Cephes' expf polynomial
    x = np.float32(x)
    big = x > np.float32(88.72283)
    small = x < np.float32(-87.33654)
    xc = min(max(x, np.float32(-87.33654)), np.float32(88.72283))
    n = np.float32(np.floor(xc * np.float32(1.442695041) + np.float32(0.5)))
    r = xc - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    # 2**n in two halves: n reaches 128 at the top of the range, one past float32's exponent
    h = np.int32(n) >> 1
    y = p * _i32_as_f32((h + np.int32(127)) << 23) * _i32_as_f32((np.int32(n) - h + np.int32(127)) << 23)
    y = np.float32(np.inf) if big else y
    y = np.float32(0.0) if small else y
    return y if x == x else x


@numba.njit(inline="always", nogil=True, error_model="numpy")
def _vtanh(x):
    # tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); below |x| = 0.625, where that difference
    # would cancel, Cephes' odd polynomial
    x = np.float32(x)
    a = abs(x)
    e = _vexp(np.float32(2.0) * min(a, np.float32(10.0)))   # tanh(10) rounds to 1
    big = np.float32(1.0) - np.float32(2.0) / (e + np.float32(1.0))
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z + np.float32(-5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z + np.float32(-3.33332819422e-1)
    near0 = x * (np.float32(1.0) + z * p)   # odd in x: keeps the sign of a zero
    far = big if x >= 0 else -big
    r = near0 if a < np.float32(0.625) else far
    return r if x == x else x


@numba.njit(inline="always", nogil=True, error_model="numpy")
def _verf(x):
    # erf(x) = x P(x^2) / Q(x^2), Eigen's rational fit over [-4, 4] (erf rounds to +-1 in
    # float32 beyond): one division and no exp, so the loop stays short
    x = np.float32(x)
    xc = min(max(x, np.float32(-4.0)), np.float32(4.0))
    z = xc * xc
    p = np.float32(-2.72614225801306e-10)
    p = p * z + np.float32(2.77068142495902e-08)
    p = p * z + np.float32(-2.10102402082508e-06)
    p = p * z + np.float32(-5.69250639462346e-05)
    p = p * z + np.float32(-7.34990630326855e-04)
    p = p * z + np.float32(-2.95459980854025e-03)
    p = p * z + np.float32(-1.60960333262415e-02)
    q = np.float32(-1.45660718464996e-05)
    q = q * z + np.float32(-2.13374055278905e-04)
    q = q * z + np.float32(-1.68282697438203e-03)
    q = q * z + np.float32(-7.37332916720468e-03)
    q = q * z + np.float32(-1.42647390514189e-02)
    r = xc * p / q
    return r if x == x else x


'''


def vectorize(expr: str) -> tuple[str, bool]:
    """expr with its libm calls replaced by the vectorizable ones; and whether any was."""
    used = False
    for libm, fast in REPLACEMENTS.items():
        if libm in expr:
            expr = re.sub(r"(?<![\w.])" + re.escape(libm), fast, expr)
            used = True
    return expr, used
