"""DFT and STFT through numpy's FFT, and MelWeightMatrix. Tensors hold complex values as a
last dimension of 2 (real, imaginary); a last dimension of 1 is a real signal."""
from __future__ import annotations

import numpy as np

from ..dtypes import to_numpy
from .base import Info, Op, normalize_axis
from .registry import register


def _complex(x: np.ndarray) -> np.ndarray:
    """In the input's precision: numpy's FFT keeps complex64 single precision, as ORT."""
    ctype = np.complex64 if x.dtype.itemsize <= 4 else np.complex128
    c = x[..., 0].astype(ctype)
    if x.shape[-1] == 2:
        c.imag = x[..., 1]
    return c


def _pairs(c: np.ndarray, dtype) -> np.ndarray:
    return np.stack([c.real, c.imag], axis=-1).astype(dtype)


@register("DFT")
class DFT(Op):
    """Opset 17: axis is an attribute (default 1); from 20 an input (default -2)."""
    mode = "return"

    def _axis(self, ctx, rank):
        if ctx.opset < 20:
            axis = int(ctx.attr("axis", 1))
        else:
            given = ctx.value(2, "axis") if ctx.input(2) is not None else None
            axis = -2 if given is None else int(np.asarray(given).reshape(-1)[0])
        axis = normalize_axis(ctx, axis, rank)
        if axis == rank - 1:
            raise ctx.fail("axis cannot be the last dimension, which holds (real, imaginary)")
        return axis

    def _length(self, ctx, shape, axis):
        if ctx.input(1) is None or ctx.inputs[1].shape == (0,):
            return shape[axis]
        n = int(np.asarray(ctx.value(1, "dft_length")).reshape(-1)[0])
        if n <= 0:
            raise ctx.fail(f"dft_length must be positive, got {n}")
        return n

    def infer(self, ctx):
        x = ctx.inputs[0]
        if x.shape[-1] not in (1, 2):
            raise ctx.fail(f"the last dimension must be 1 (real) or 2 (complex), got {x.shape[-1]}")
        axis = self._axis(ctx, len(x.shape))
        n = self._length(ctx, x.shape, axis)
        shape = list(x.shape)
        if ctx.attr("onesided", 0) and ctx.attr("inverse", 0):  # half spectrum in, real signal out
            shape[axis], shape[-1] = self._irfft_length(ctx, x.shape, axis), 1
        else:
            shape[axis], shape[-1] = (n // 2 + 1 if ctx.attr("onesided", 0) else n), 2
        return [Info(tuple(shape), x.dtype)]

    def _irfft_length(self, ctx, shape, axis):
        if ctx.input(1) is None or ctx.inputs[1].shape == (0,):
            return 2 * (shape[axis] - 1)
        return self._length(ctx, shape, axis)

    def kernel(self, ctx):
        x_info = ctx.inputs[0]
        axis = self._axis(ctx, len(x_info.shape))
        n = self._length(ctx, x_info.shape, axis)
        inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))

        if inverse and onesided:
            m = self._irfft_length(ctx, x_info.shape, axis)

            def irfft(x, *_):
                return np.fft.irfft(_complex(x), n=m, axis=axis)[..., None].astype(x.dtype)
            return irfft

        def run(x, *_):
            c = _complex(x)
            out = np.fft.ifft(c, n=n, axis=axis) if inverse else np.fft.fft(c, n=n, axis=axis)
            if onesided:
                out = np.take(out, np.arange(n // 2 + 1), axis=axis)
            return _pairs(out, x.dtype)
        return run


@register("STFT")
class STFT(Op):
    mode = "return"

    def _geometry(self, ctx):
        signal = ctx.inputs[0]
        step = int(np.asarray(ctx.value(1, "frame_step")).reshape(-1)[0])
        window = ctx.input(2)
        if ctx.input(3) is not None:
            length = int(np.asarray(ctx.value(3, "frame_length")).reshape(-1)[0])
        elif window is not None:
            length = window.shape[0]
        else:
            raise ctx.fail("either window or frame_length must be given")
        if step <= 0 or length <= 0 or length > signal.shape[1]:
            raise ctx.fail(f"frame_step {step} / frame_length {length} do not fit a signal of {signal.shape[1]}")
        frames = 1 + (signal.shape[1] - length) // step
        bins = length // 2 + 1 if ctx.attr("onesided", 1) else length
        return step, length, frames, bins

    def infer(self, ctx):
        step, length, frames, bins = self._geometry(ctx)
        return [Info((ctx.inputs[0].shape[0], frames, bins, 2), ctx.inputs[0].dtype)]

    def kernel(self, ctx):
        step, length, frames, bins = self._geometry(ctx)

        def run(signal, frame_step, window=None, frame_length=None):
            c = _complex(signal)
            starts = np.arange(frames) * step
            framed = c[:, starts[:, None] + np.arange(length)[None, :]]  # (batch, frames, length)
            if window is not None and np.size(window):
                framed = framed * window.astype(np.float64)
            return _pairs(np.fft.fft(framed, axis=-1)[..., :bins], signal.dtype)
        return run


@register("MelWeightMatrix")
class MelWeightMatrix(Op):
    """[dft_length // 2 + 1, num_mel_bins] triangular filters. As the spec's own
    computation: num_mel_bins + 2 mel points spaced by (high - low) / (num_mel_bins + 2),
    in float64, each filter rising over [left, center] and falling over [center, right)."""
    def _args(self, ctx):
        names = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")
        return [np.asarray(ctx.value(i, name)).reshape(-1)[0] for i, name in enumerate(names)]

    def infer(self, ctx):
        bins, length, *_ = self._args(ctx)
        if bins <= 0 or length <= 0:
            raise ctx.fail(f"num_mel_bins ({bins}) and dft_length ({length}) must be positive")
        dtype = to_numpy(ctx.attr("output_datatype", 1))
        return [Info((int(length) // 2 + 1, int(bins)), dtype)]

    def kernel(self, ctx):
        bins, length, rate, low, high = self._args(ctx)
        bins, length = int(bins), int(length)
        if rate <= 0 or not 0 <= low <= high:
            raise ctx.fail(f"sample_rate ({rate}) must be positive and 0 <= lower_edge_hertz ({low}) "
                           f"<= upper_edge_hertz ({high})")
        low_mel, high_mel = (2595 * np.log1p(np.float64(hz) / 700) / np.log(10) for hz in (low, high))
        mel = np.arange(bins + 2) * ((high_mel - low_mel) / (bins + 2)) + low_mel
        points = (((length + 1) * (700 * np.expm1(mel / 2595 * np.log(10)))) // float(rate)).astype(np.int64)
        n_spectrum = length // 2 + 1
        if points.max() >= n_spectrum:
            raise ctx.fail(f"upper_edge_hertz {high} lies past the spectrum of dft_length {length} at "
                           f"sample_rate {rate}")
        weights = np.zeros((n_spectrum, bins))
        for i in range(bins):
            left, center, right = points[i:i + 3]
            if center == left:
                weights[center, i] = 1
            else:
                weights[left:center + 1, i] = (np.arange(left, center + 1) - left) / (center - left)
            if right > center:
                weights[center:right, i] = (right - np.arange(center, right)) / (right - center)

        def mel_weight_matrix(*args):
            args[-1][...] = weights
        return mel_weight_matrix
