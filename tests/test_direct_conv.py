"""Direct convolutions (ops/direct_conv.py) on our own micro-kernel (codegen/cpu/microkernel.py):
the micro-kernel against numpy, and whole convolutions against the oracle over shapes,
padding, strides, dilation and fused epilogues."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxruntime as ort
from tests.util import make_model, reference

from ortjit.ops import blas, direct_conv
from ortjit.codegen.cpu import microkernel

needs_microkernel = pytest.mark.skipif(
    not (blas.threaded() and microkernel.host_tile() is not None),
    reason="direct convolutions need Numba's threads and a CPU with AVX2 and FMA")


def calls_into_direct_conv(monkeypatch, kind=direct_conv.DirectConv) -> list:
    """Records each DirectConv (or ChannelConv) made (its dims), so a test knows the path ran."""
    made = []
    original = kind.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if type(self) is kind:
            made.append(self.dims)
    monkeypatch.setattr(kind, "__init__", spy)
    return made


@needs_microkernel
@pytest.mark.parametrize("tile", [microkernel.AVX512, microkernel.AVX2], ids=["avx512", "avx2"])
def test_microkernel_block_is_the_product_and_accumulates(tile):
    # the AVX2 tile's IR runs on any x86-64 with AVX2 (LLVM splits what it must)
    from numba import njit
    mr, nr = tile.rows, tile.cols
    kernel = microkernel.build(tile.rows, tile.vectors, tile.lanes)

    @njit
    def run(kc, a, b, offs, c, accumulate):
        kernel(kc, a.ctypes.data, b.ctypes.data, offs.ctypes.data, c.ctypes.data, c.shape[1], accumulate)

    rng = np.random.default_rng(0)
    kc = 37
    # B's rows at scattered, overlapping offsets, as a convolution's taps read them
    offs = rng.permutation(kc * 3)[:kc].astype(np.int64) * 5
    source = rng.standard_normal(int(offs.max()) + nr).astype(np.float32)
    packed_a = rng.standard_normal((kc, mr)).astype(np.float32)
    b_rows = np.stack([source[o:o + nr] for o in offs])          # (kc, NR)
    expect = packed_a.T.astype(np.float64) @ b_rows
    c = np.full((mr, nr + 5), np.nan, np.float32)   # a wider row stride than the block
    run(kc, packed_a, source, offs, c, 0)
    np.testing.assert_allclose(c[:, :nr], expect, rtol=1e-5, atol=1e-4)
    assert np.isnan(c[:, nr:]).all()                # nothing written past the block
    run(kc, packed_a, source, offs, c, 1)
    np.testing.assert_allclose(c[:, :nr], 2 * expect, rtol=1e-5, atol=1e-4)
    run(0, packed_a, source, offs, c, 0)            # an empty sum stores zeros
    assert (c[:, :nr] == 0).all()


@pytest.mark.parametrize("tile", [microkernel.AVX512, microkernel.AVX2], ids=["avx512", "avx2"])
@pytest.mark.parametrize("vectors", [1, 2, 3])
def test_gathered_microkernel_broadcasts_each_rows_own_input(tile, vectors):
    """The roles turned round (ChannelConv): row i's scalar for step k is the input at
    rows[i] + offs[k], B's row k the packed weights at w + k ldw, of which the first
    `vectors` vectors are used."""
    from numba import njit
    mr, nr = tile.rows, tile.cols
    kernel = microkernel.build(tile.rows, vectors, tile.lanes, True)

    @njit
    def run(kc, x, rows, offs, c, accumulate, w):
        kernel(kc, x.ctypes.data, rows.ctypes.data, offs.ctypes.data, c.ctypes.data, c.shape[1], accumulate,
               w.ctypes.data, w.shape[1])

    rng = np.random.default_rng(1)
    kc = 29
    offs = rng.permutation(kc * 4)[:kc].astype(np.int64)
    rows = rng.integers(0, 50, mr).astype(np.int64)   # any pixels, repeats allowed
    x = rng.standard_normal(int(rows.max() + offs.max()) + 1).astype(np.float32)
    w = rng.standard_normal((kc, nr + 3)).astype(np.float32)   # a panel wider than the block
    a = x[rows[:, None] + offs[None, :]].astype(np.float64)   # (MR, kc)
    used = vectors * tile.lanes
    expect = a @ w[:, :used]
    c = np.full((mr, nr), np.nan, np.float32)
    run(kc, x, rows, offs, c, 0, w)
    np.testing.assert_allclose(c[:, :used], expect, rtol=1e-5, atol=1e-4)
    assert np.isnan(c[:, used:]).all()   # the vectors not asked for are not written
    run(kc, x, rows, offs, c, 1, w)
    np.testing.assert_allclose(c[:, :used], 2 * expect, rtol=1e-5, atol=1e-4)


def conv_model(x_shape, w_shape, attrs, bias, static_w, tail):
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    w = (rng.standard_normal(w_shape) * 0.3).astype(np.float32)
    inputs = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    inits = {}
    (inits if static_w else inputs)["w"] = w
    names = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(w_shape[0]).astype(np.float32)
        names.append("b")
    nodes = [helper.make_node("Conv", names, ["y" if tail else "out"], **attrs)]
    if tail == "relu":
        nodes.append(helper.make_node("Relu", ["y"], ["out"]))
    elif tail == "residual":   # an input of the output's shape, added per pixel
        model_out = reference(make_model(nodes, inputs, ["y"], inits), inputs)[0]
        inputs["r"] = rng.standard_normal(model_out.shape).astype(np.float32)
        nodes += [helper.make_node("Add", ["y", "r"], ["s"]), helper.make_node("Relu", ["s"], ["out"])]
    elif tail == "per_channel":
        inits["k"] = rng.standard_normal((w_shape[0], 1) + (1,) * (len(x_shape) - 3)).astype(np.float32)
        nodes += [helper.make_node("Mul", ["y", "k"], ["s"]), helper.make_node("Tanh", ["s"], ["out"])]
    return make_model(nodes, inputs, ["out"], inits), inputs


@needs_microkernel
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 40), m=st.integers(1, 70), h=st.integers(1, 17), w=st.integers(1, 23),
       kh=st.integers(1, 5), kw=st.integers(1, 5), dilation=st.integers(1, 2), stride=st.integers(1, 3),
       pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       bias=st.booleans(), static_w=st.booleans(), tail=st.sampled_from([None, "relu", "residual", "per_channel"]),
       data=st.data())
def test_property_direct_conv_matches_the_oracle(n, c, m, h, w, kh, kw, dilation, stride, pads, bias, static_w,
                                                 tail, data):
    if kh * kw == 1:
        kh = 3   # 1x1: test_pointwise_conv_with_a_residual_on_the_channel_kernel
    h = max(h, (kh - 1) * dilation + 1 - pads[0] - pads[2])   # the window fits
    w = max(w, (kw - 1) * dilation + 1 - pads[1] - pads[3])
    one_d = data.draw(st.booleans()) and kh == 1
    if one_d:
        x_shape, w_shape = (n, c, w), (m, c, kw)
        attrs = dict(pads=[pads[1], pads[3]], dilations=[dilation], strides=[stride])
    else:
        x_shape, w_shape = (n, c, h, w), (m, c, kh, kw)
        attrs = dict(pads=pads, dilations=[dilation, dilation], strides=[stride, data.draw(st.integers(1, 3))])
    if not static_w and tail is not None:
        tail = None
    channels = data.draw(st.booleans(), label="output channels in the vectors (ChannelConv)")
    model, feed = conv_model(x_shape, w_shape, attrs, bias, static_w, tail)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(direct_conv, "FORCED", True)   # small shapes too
        monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", channels)
        made = calls_into_direct_conv(monkeypatch, direct_conv.ChannelConv if channels else direct_conv.DirectConv)
        got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    expect = reference(model, feed)[0]
    assert got.shape == expect.shape
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expect).max())))
    assert len(made) == 1


@needs_microkernel
@pytest.mark.parametrize("kernel, strides, dilations", [([3, 3], [1, 1], [1, 1]), ([1, 1], [1, 1], [1, 1]),
                                                       ([3, 2], [2, 3], [1, 1]), ([3, 3], [1, 2], [2, 1])])
def test_unpadded_channel_conv_reads_the_input_in_place(monkeypatch, kernel, strides, dilations):
    """No padding: ChannelConv's taps read the input where it lies (no padded copy), over
    two images, with a residual epilogue."""
    monkeypatch.setattr(direct_conv, "FORCED", True)
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", True)
    made = []
    original = direct_conv.ChannelConv.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self.in_place)
    monkeypatch.setattr(direct_conv.ChannelConv, "__init__", spy)
    attrs = dict(strides=strides, dilations=dilations)
    model, feed = conv_model((2, 20, 11, 13), (52, 20, *kernel), attrs, True, True, "residual")
    got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    expect = reference(model, feed)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expect).max())))
    assert made == [True]


@needs_microkernel
def test_winograd_keeps_wide_3x3_convolutions_and_direct_takes_narrow_ones():
    f32 = np.float32
    assert direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 64, 64, [56, 56])
    assert direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 128, 32, [56, 56])   # DenseNet's 128 -> 32
    assert direct_conv.worthwhile(f32, 1, [5, 5], [1, 1], [1, 1], 1, 32, 96, [27, 27])
    assert not direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 256, 256, [14, 14])   # Winograd
    assert direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 128, 160, [14, 14])   # small: ChannelConv
    assert not direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 8, 128, 160, [14, 14])   # 8 images: Winograd
    assert not direct_conv.worthwhile(f32, 1, [1, 1], [1, 1], [1, 1], 1, 64, 256, [56, 56])    # one GEMM on the BLAS
    assert direct_conv.worthwhile(f32, 1, [3, 3], [2, 2], [1, 1], 1, 128, 128, [28, 28])        # stride 2: phases
    assert not direct_conv.worthwhile(f32, 1, [3, 3], [5, 5], [1, 1], 1, 64, 64, [12, 12])     # stride 5: im2col
    assert direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 64, 256, [13, 13])   # 193 columns of 208
    assert direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 1, 512, 512, [7, 7])   # weights streamed
    assert not direct_conv.worthwhile(f32, 1, [3, 3], [1, 1], [1, 1], 8, 512, 512, [7, 7])   # shared by 8
    assert not direct_conv.worthwhile(f32, 1, [3, 3], [2, 2], [1, 1], 1, 3, 64, [111, 111])   # 27 terms a sum
    assert not direct_conv.worthwhile(f32, 2, [3, 3], [1, 1], [1, 1], 1, 64, 64, [28, 28])     # groups
    assert not direct_conv.worthwhile(np.float64, 1, [3, 3], [1, 1], [1, 1], 1, 64, 64, [28, 28])


@needs_microkernel
@pytest.mark.parametrize("channels", [False, True], ids=["DirectConv", "ChannelConv"])
def test_sums_over_several_blocks_of_k(monkeypatch, channels):
    """K (here 20 channels x 9 taps) summed in blocks of KC rows, the last one partial."""
    monkeypatch.setattr(direct_conv, "FORCED", True)
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", channels)
    monkeypatch.setattr(direct_conv, "KC", 16)
    made = calls_into_direct_conv(monkeypatch, direct_conv.ChannelConv if channels else direct_conv.DirectConv)
    model, feed = conv_model((2, 20, 12, 11), (37, 20, 3, 3), dict(pads=[1, 1, 1, 1]), True, True, "relu")
    got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    expect = reference(model, feed)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expect).max())))
    assert len(made) == 1


@needs_microkernel
def test_small_pointwise_convolutions_take_the_channel_kernel():
    """1x1 layers whose batch's output is 32x32 or less, with 48 input channels or more, run on
    ChannelConv; larger batches and images, and short sums, stay one GEMM."""
    f32 = np.float32
    assert direct_conv.worthwhile(f32, 1, [1, 1], [1, 1], [1, 1], 1, 512, 2048, [7, 7])
    assert direct_conv.worthwhile(f32, 1, [1, 1], [2, 2], [1, 1], 1, 256, 512, [28, 28])    # ResNet's downsample
    assert not direct_conv.worthwhile(f32, 1, [1, 1], [1, 1], [1, 1], 8, 256, 1024, [14, 14])   # 8 images: one GEMM
    assert not direct_conv.worthwhile(f32, 1, [1, 1], [1, 1], [1, 1], 1, 32, 128, [27, 27])     # 32 terms a sum
    assert not direct_conv.worthwhile(f32, 1, [1, 1], [1, 1], [1, 1], 1, 64, 256, [56, 56])


@needs_microkernel
@pytest.mark.parametrize("n, hw, stride", [(1, 14, 1), (2, 9, 1), (1, 27, 2)])
def test_pointwise_conv_with_a_residual_on_the_channel_kernel(monkeypatch, n, hw, stride):
    made = calls_into_direct_conv(monkeypatch, direct_conv.ChannelConv)
    model, feed = conv_model((n, 64, hw, hw), (80, 64, 1, 1), dict(strides=[stride, stride]), True, True, "residual")
    got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    expect = reference(model, feed)[0]
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expect).max())))
    assert len(made) == 1


@needs_microkernel
@pytest.mark.parametrize("kind", ["DirectConv", "ChannelConv"])
def test_session_keeps_working_after_a_bad_feed_and_with_other_batch_sizes(monkeypatch, kind):
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", kind == "ChannelConv")
    made = calls_into_direct_conv(monkeypatch, getattr(direct_conv, kind))
    model, feed = conv_model((2, 8, 12, 12), (16, 8, 3, 3), dict(pads=[1, 1, 1, 1]), True, True, "relu")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    sess = ort.InferenceSession(model.SerializeToString())
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument):
        sess.run(None, {"x": feed["x"][:, :5]})
    one_thread = ort.SessionOptions()
    one_thread.intra_op_num_threads = 1   # the work shared out among one thread
    serial = ort.InferenceSession(model.SerializeToString(), one_thread)
    for batch in (2, 1, 3):
        x = np.resize(feed["x"], (batch, 8, 12, 12)).astype(np.float32)
        expect = reference(model, {"x": x})[0]
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], expect, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(serial.run(None, {"x": x})[0], expect, rtol=1e-4, atol=1e-4)
    assert len(made) == 6   # one plan per batch size and session


@needs_microkernel
def test_the_avx2_tile_convolves_as_the_oracle_does(monkeypatch):
    """The tile a CPU without AVX-512 gets (4 x 24, 8-float vectors), run here."""
    monkeypatch.setattr(microkernel, "host_tile", lambda: microkernel.AVX2)
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", False)
    made = calls_into_direct_conv(monkeypatch)
    for x_shape, w_shape, attrs in [((2, 6, 11, 13), (9, 6, 3, 3), dict(pads=[1, 1, 1, 1])),
                                    ((1, 3, 30, 30), (10, 3, 7, 7), dict(pads=[3, 3, 3, 3], strides=[2, 2]))]:
        model, feed = conv_model(x_shape, w_shape, attrs, True, True, "relu")
        monkeypatch.setattr(direct_conv, "FORCED", True)
        got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
        np.testing.assert_allclose(got, reference(model, feed)[0], rtol=1e-4, atol=1e-4)
    # panels of 24 columns: 11 rows of 15 in 7 of them, 15 rows of 18 (stride phases) in 12
    assert [dims[4] for dims in made] == [7, 12]


@needs_microkernel
def test_the_avx2_tile_convolves_with_channels_in_the_vectors(monkeypatch):
    """ChannelConv on the 4 x 24 tile: 10 output channels (a panel of 24 with one vector
    short), pixels over two images in blocks of 4 (the last one part full)."""
    monkeypatch.setattr(microkernel, "host_tile", lambda: microkernel.AVX2)
    monkeypatch.setattr(direct_conv, "FORCED", True)
    monkeypatch.setattr(direct_conv, "FORCED_CHANNELS", True)
    made = calls_into_direct_conv(monkeypatch, direct_conv.ChannelConv)
    for x_shape, w_shape, attrs in [((2, 6, 11, 13), (10, 6, 3, 3), dict(pads=[1, 1, 1, 1])),
                                    ((1, 3, 30, 30), (10, 3, 7, 7), dict(pads=[3, 3, 3, 3], strides=[2, 2]))]:
        model, feed = conv_model(x_shape, w_shape, attrs, True, True, "residual")
        got = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
        np.testing.assert_allclose(got, reference(model, feed)[0], rtol=1e-4, atol=1e-4)
    # (pixel blocks, channel panels): 2 x 143 pixels in 72 blocks of 4, 15 x 15 in 57
    assert [(dims[5], dims[6]) for dims in made] == [(72, 1), (57, 1)]


@needs_microkernel
def test_small_outputs_take_the_channel_kernel():
    assert direct_conv.kernel_for([13, 13]) is direct_conv.ChannelConv
    assert direct_conv.kernel_for([7, 7]) is direct_conv.ChannelConv
    assert direct_conv.kernel_for([28, 28]) is direct_conv.ChannelConv
    assert direct_conv.kernel_for([56, 56]) is direct_conv.DirectConv
