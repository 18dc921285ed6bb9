"""The Triton kernel of the cross scan and cross merge.

One program copies a (channels × rows × columns) tile: the scan reads it once
(any memory format of x, through strides) and writes it to the four routes;
the merge reads the four routes and writes their float32 sum. Sizes are
runtime arguments, so a new image size does not recompile.
"""
import triton
import triton.language as tl

__all__ = ['cross_kernel']


@triton.jit(
    do_not_specialize=['C', 'H', 'W', 'NW', 's_b', 's_c', 's_h', 's_w'])
def cross_kernel(x_ptr, y_ptr, C, H, W, NW, s_b, s_c, s_h, s_w,
                 MERGE: tl.constexpr, BC: tl.constexpr, BH: tl.constexpr,
                 BW: tl.constexpr):
    """Scan: x (B, C, H, W) with strides s_* → y (B, 4, C, L) contiguous.
    Merge: y (B, 4, C, L) contiguous → x (B, C, H, W) with strides s_*.

    A program owns a (BC, BH, BW) tile: rows are contiguous in the row-major
    routes and columns in the column-major ones, so every route is written
    (or read) in contiguous runs (the compiler transposes through shared
    memory).
    """
    pid_hw = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    L = H * W
    hh = (pid_hw // NW) * BH + tl.arange(0, BH)
    ww = (pid_hw % NW) * BW + tl.arange(0, BW)
    c = pid_c * BC + tl.arange(0, BC)
    c3 = c[:, None, None]
    h3 = hh[None, :, None]
    w3 = ww[None, None, :]
    mask = (c3 < C) & (h3 < H) & (w3 < W)
    x_ptrs = x_ptr + b * s_b + c3 * s_c + h3 * s_h + w3 * s_w
    y_base = y_ptr + b * 4 * C * L + c3 * L
    t0 = h3 * W + w3
    t1 = w3 * H + h3
    if MERGE:
        acc = tl.load(y_base + t0, mask=mask, other=0.).to(tl.float32)
        acc += tl.load(y_base + C * L + t1, mask=mask, other=0.).to(tl.float32)
        acc += tl.load(
            y_base + 2 * C * L + (L - 1 - t0), mask=mask,
            other=0.).to(tl.float32)
        acc += tl.load(
            y_base + 3 * C * L + (L - 1 - t1), mask=mask,
            other=0.).to(tl.float32)
        tl.store(x_ptrs, acc.to(x_ptr.dtype.element_ty), mask=mask)
    else:
        v = tl.load(x_ptrs, mask=mask)
        tl.store(y_base + t0, v, mask=mask)
        tl.store(y_base + C * L + t1, v, mask=mask)
        tl.store(y_base + 2 * C * L + (L - 1 - t0), v, mask=mask)
        tl.store(y_base + 3 * C * L + (L - 1 - t1), v, mask=mask)
