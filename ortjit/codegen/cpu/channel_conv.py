"""Source of a direct convolution with the output channels in the vectors (ops/direct_conv.py's
ChannelConv): the micro-kernel's roles turned round (microkernel.build(gathered=True)).
MR output pixels are broadcast, each from its own address in the padded input (render_pad's
pad() writes it, as for the pixel-lanes kernel); NR output channels come from the packed
weights. Any MR valid pixels make a row block, so no padded column is computed: at 13x13
the pixel-lanes kernel computes 208 columns for 169 outputs.

Units are (block of MR pixels, channel panel), pixel-block-major: consecutive units read the
same input pixels while the panels of weights cycle through L2 (panel-major measured the
same or a little slower). Each unit's MR x NR block of C is copied out channel by channel,
each channel's MR pixels with the bias or the fused elementwise program (ops/fused_conv.py's
epilogue) applied. Pixels run over all images: q = image * P + p, P = oh * ow; `where`
holds (image, p) for each q, read only for a block that spans two images or ends short.
"""
from __future__ import annotations

from . import bias_copy_out, copy_out_program, microkernel, threads
from ..elementwise import ScalarProgram

_PRODUCT = '''
@njit(nogil=True, error_model="numpy")
def work(part, xpad, packed, offs, rows, where, blocks, bias, y, dims{extra_args}):
    """Thread `part`'s share of kernel()'s units."""
    n, M, K, kc_max, P, pixel_blocks, panels, y_image = dims
    parts = blocks.shape[0]
    units = pixel_blocks * panels
    lo, hi = part * units // parts, (part + 1) * units // parts
    k_blocks = packed.shape[0]
    panel_bytes = kc_max * NR * 4
    block = blocks[part]
    c_at, x_at, o_base, w_base, r_base = (block.ctypes.data, xpad.ctypes.data, offs.ctypes.data,
                                          packed.ctypes.data, rows.ctypes.data)
    for u in range(lo, hi):
        pb, pn = u // panels, u % panels
        channels = min(NR, M - pn * NR)
        vectors = (channels + LANES - 1) // LANES
        r_at = r_base + pb * MR * 8
        for kb in range(k_blocks):
            k0 = kb * kc_max
            kc = min(kc_max, K - k0)
            w_at = w_base + (kb * panels + pn) * panel_bytes
{call}        q0 = pb * MR
        valid = min(MR, n * P - q0)
        # a block within one image (all but a few) holds consecutive pixels: no table reads
        img0, p0 = where[q0, 0], where[q0, 1]
        whole = valid == MR and where[q0 + MR - 1, 0] == img0
        for cc in range(channels):
            m = pn * NR + cc
{per_channel}
            for r in range(valid):
                if whole:
                    img, p = img0, p0 + r
                else:
                    img, p = where[q0 + r, 0], where[q0 + r, 1]
                dst = img * y_image + m * P + p   # y's images may lie apart (a Concat's part)
{per_pixel}
'''

_KERNEL = '''

@njit(cache=True, nogil=True)
def kernel(xpad, packed, offs, rows, where, blocks, bias, y, dims{extra_args}):
    """y[img, m, p] = {what} of sum_k packed(k, m) xpad[rows[q] + offs[k]], q = img P + p:
    each thread's share is one call of work()."""
    {launch}
'''


def render_channel_conv(tile: microkernel.Tile, parallel: bool, bias: bool,
                        program: ScalarProgram | None = None, product_at: int = 0,
                        patterns: list | None = None) -> str:
    """Module source defining kernel(xpad, packed, offs, rows, where, blocks, bias, y, dims,
    in...): as codegen/cpu/direct_conv.py's render_direct_conv, the same program and
    broadcast patterns (varies along images, channels, pixels)."""
    ind_c, ind_p = " " * 12, " " * 16
    product = "block[r, cc]"
    if program is None:
        header, per_channel, per_pixel, extra_args, what = bias_copy_out(product, "y[np.uint64(dst)]", bias,
                                                                         ind_c, ind_p)
    else:
        header, others, extra_args, per_pixel, body = copy_out_program(program, product_at, product,
                                                                       "y[np.uint64(dst)]", ind_p)
        what = "the epilogue"
        per_channel = []
        for j, (images, channels, pixels) in zip(others, patterns):
            at = f"(({'img' if images else '0'} * {'M' if channels else '1'} + {'m' if channels else '0'})" \
                 f" * {'P' if pixels else '1'} + {'p' if pixels else '0'})"
            per_pixel.append(ind_p + f"{program.inputs[j]} = in{j}[np.uint64{at}]")
        per_pixel += body
    args = "xpad, packed, offs, rows, where, blocks, bias, y, dims" + extra_args
    launch = threads.launch(parallel, "blocks.shape[0]", args)
    call = microkernel.call_by_vectors(tile, " " * 12, "kc, x_at, r_at, o_base + k0 * 8, c_at, NR, kb, w_at, NR",
                                       "_gathered", f"_gathered_{tile.vectors}")
    body = (_PRODUCT + _KERNEL).format(launch=launch, extra_args=extra_args, what=what, call=call,
                                       per_channel="\n".join(per_channel) or ind_c + "pass",
                                       per_pixel="\n".join(per_pixel))
    return header + threads.header(parallel) + microkernel.gathered_source(tile) + body
