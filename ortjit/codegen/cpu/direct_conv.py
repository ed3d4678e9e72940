"""Source of a direct (implicit-GEMM) convolution kernel: see ops/direct_conv.py for the
scheme (and for the stride phases that pad() writes). The GEMM is the micro-kernel's
(microkernel.py); what follows each group of panels is generated here: the group's valid
columns copied into the output with the bias added, or with a fused elementwise program
(ops/fused_conv.py's epilogue: bias, scale and shift, residual Add, activation...) applied
on the way, while the block is still in cache.

The padded copy is one kernel shared by every direct convolution (compiled once per
machine), its planes spread over the threads. The product's threads each call work()
once, for their share of the panels (threads.run_parts). Tried for compile time on a cold
ResNet-50, when both were prange loops: the copy as a second parallel loop in the
product's kernel (4.2 s for the module, against 1.8 + 1.7 s for two), or made by each
thread for the images it reads, into a buffer of its own (5.1 s).

The kernel's own names avoid the program's (x<k>, t<k>). The program's other inputs come
as flat arrays of a (images, channels, pixels) view whose dims are full or 1 (broadcast),
so the source depends on the broadcast patterns only.
"""
from __future__ import annotations

from . import HEADER, bias_copy_out, copy_out_program, microkernel, threads
from ..elementwise import ScalarProgram

_PAD = '''
@njit(nogil=True, error_model="numpy")
def pad_plane(u, x, xpad, dims):
    """Plane u (image u // C, channel u % C) of pad()."""
    n, C, H, W, Hq, Wq, ph, pw, sh, sw, stride = dims
    size = Hq * Wq
    img, c = u // C, u % C
    base = img * stride + c * sh * sw * size
    src = u * H * W
    for ra in range(sh):
        for rb in range(sw):
            plane = base + (ra * sw + rb) * size
            # the plane's columns q whose input column q sw + rb - pw lies in [0, W)
            lo = min(Wq, max(0, (pw - rb + sw - 1) // sw))
            hi = max(lo, min(Wq, (W - 1 + pw - rb) // sw + 1))
            for r in range(Hq):
                row = plane + r * Wq
                at = r * sh + ra - ph
                if at < 0 or at >= H:
                    for q in range(Wq):
                        xpad[np.uint64(row + q)] = 0.0
                    continue
                for q in range(lo):
                    xpad[np.uint64(row + q)] = 0.0
                s = src + at * W + rb - pw
                if sw == 1:   # a contiguous copy, which LLVM vectorizes
                    for q in range(lo, hi):
                        xpad[np.uint64(row + q)] = x[np.uint64(s + q)]
                else:
                    for q in range(lo, hi):
                        xpad[np.uint64(row + q)] = x[np.uint64(s + q * sw)]
                for q in range(hi, Wq):
                    xpad[np.uint64(row + q)] = 0.0
    if c == C - 1:
        for q in range(base + sh * sw * size, (img + 1) * stride):
            xpad[np.uint64(q)] = 0.0


@njit(cache=True, nogil=True)
def pad(x, xpad, dims):
    """xpad[img, c] = x[img, c] placed at (ph, pw) in zeros, split into sh x sw stride
    phases: padded element (r, q) goes to phase (r % sh, q % sw), at (r // sh, q // sw) of
    its Hq x Wq plane. With stride 1 that is one plane, the zero-padded image. After each
    image's last plane comes the tail the last panels' dropped columns read: zeros."""
    {launch}
'''

_PRODUCT = '''
@njit(nogil=True, error_model="numpy")
def work(part, xpad, packed, offs, blocks, bias, y, dims{extra_args}):
    """Thread `part`'s share of kernel()'s units: NR pixels in the vectors, MR output
    channels broadcast."""
    n, M, K, kc_max, panels_per_image, stride, m_split, m_step, group, oh, ow, Wp, y_image = dims
    parts = blocks.shape[0]
    k_blocks, m_panels = packed.shape[0], packed.shape[1]
    panels = n * panels_per_image
    units = panels * m_split
    ldc = blocks.shape[2]
    panel_bytes = kc_max * MR * 4
    lo, hi = part * units // parts, (part + 1) * units // parts
    a_base, o_base, x_base = packed.ctypes.data, offs.ctypes.data, xpad.ctypes.data
    block = blocks[part]
    c_base = block.ctypes.data
    last = (oh - 1) * Wp + ow   # an image's computed columns that hold output
    u = lo
    while u < hi:
        mc = u // panels
        end = min(hi, u + group, (mc + 1) * panels)
        m_lo, m_hi = mc * m_step, min(m_panels * MR, (mc + 1) * m_step)
        for kb in range(k_blocks):
            k0 = kb * kc_max
            kc = min(kc_max, K - k0)
            for q in range(u, end):
                pq = q % panels
                x_at = x_base + ((pq // panels_per_image) * stride + (pq % panels_per_image) * NR) * 4
                c_at = c_base + (q - u) * NR * 4
                # an image's last panel: the vectors that reach its last output pixel
                vectors = (min(NR, last - (pq % panels_per_image) * NR) + LANES - 1) // LANES
                for mp in range(m_lo // MR, m_hi // MR):
{call}        # the group's valid columns into y, while the block is in cache
        for q in range(u, end):
            pq = q % panels
            img, col = pq // panels_per_image, (pq % panels_per_image) * NR
            i_lo, i_hi = col // Wp, min(oh, (col + NR - 1) // Wp + 1)
            for m in range(m_lo, min(M, m_hi)):
                row = block[m]
{per_channel}
                for i in range(i_lo, i_hi):
                    j0 = max(col, i * Wp) - i * Wp
                    j1 = min(col + NR, i * Wp + ow) - i * Wp
                    dst = img * y_image + (m * oh + i) * ow   # y's images may lie apart (a Concat's part)
                    src = (q - u) * NR + i * Wp - col
{per_row}
                    for j in range(j0, j1):
{per_pixel}
        u = end
'''

_KERNEL = '''

@njit(cache=True, nogil=True)
def kernel(xpad, packed, offs, blocks, bias, y, dims{extra_args}):
    """y[img, m, i, j] = {what} of sum_k packed(m, k) xpad[img, offs[k] + i Wp + j]: each
    thread's share is one call of work()."""
    {launch}
'''


def render_direct_conv(tile: microkernel.Tile, parallel: bool, bias: bool,
                       program: ScalarProgram | None = None, product_at: int = 0,
                       patterns: list | None = None) -> str:
    """Module source defining kernel(xpad, packed, offs, blocks, bias, y, dims, in...) over
    an input padded by render_pad's pad(). Without a program: y = product (+ bias[m] with
    `bias`). With one: y = program(product, in...), in j broadcast as patterns[j] =
    (varies along images, channels, pixels) says; the bias argument is then unused."""
    ind_c, ind_r, ind_p = (" " * k for k in (16, 20, 24))
    product = "row[np.uint64(src + j)]"
    if program is None:
        header, per_channel, per_pixel, extra_args, what = bias_copy_out(product, "y[np.uint64(dst + j)]", bias,
                                                                         ind_c, ind_p)
        per_row = []
    else:
        header, others, extra_args, per_pixel, body = copy_out_program(program, product_at, product,
                                                                       "y[np.uint64(dst + j)]", ind_p)
        what = "the epilogue"
        per_channel, per_row = [], []
        for j, (images, channels, pixels) in zip(others, patterns):
            at = f"(({'img' if images else '0'} * {'M' if channels else '1'} + {'m' if channels else '0'})"
            if pixels:   # varies along the pixels: one base per output row
                per_row.append(ind_r + f"at{j} = {at} * oh + i) * ow")
                per_pixel.append(ind_p + f"{program.inputs[j]} = in{j}[np.uint64(at{j} + j)]")
            else:        # one value per channel (or for all)
                per_channel.append(ind_c + f"{program.inputs[j]} = in{j}[np.uint64{at})]")
        per_pixel += body
    launch = threads.launch(parallel, "blocks.shape[0]", "xpad, packed, offs, blocks, bias, y, dims" + extra_args)
    call = microkernel.call_by_vectors(tile, " " * 20, "kc, a_base + (kb * m_panels + mp) * panel_bytes, x_at, "
                                       "o_base + k0 * 8, c_at + mp * MR * ldc * 4, ldc, kb")
    body = (_PRODUCT + _KERNEL).format(launch=launch, extra_args=extra_args, what=what, call=call,
                                            per_channel="\n".join(per_channel) or ind_c + "pass",
                                            per_row="\n".join(per_row) or ind_r + "pass",
                                            per_pixel="\n".join(per_pixel))
    return header + threads.header(parallel) + microkernel.source(tile) + microkernel.narrower_source(tile) + body


def render_pad(parallel: bool) -> str:
    """Module source defining pad(x, xpad, dims): the same for every direct convolution, so
    it compiles once (per machine: the disk cache keeps it)."""
    return HEADER + threads.header(parallel) + _PAD.format(launch=threads.launch(parallel, "dims[0] * dims[1]",
                                                                                   "x, xpad, dims", "pad_plane"))
