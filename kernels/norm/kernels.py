"""The Triton kernels of the LayerNorm op (:mod:`.op`): the forward over rows of
C contiguous elements, writing the result in its consumer's dtype (and, when
asked, the 16-bit x̂ and the float32 statistics), and the backward writing dx
and one row of weight/bias partial sums per program.

C is specialised (not ``do_not_specialize``): knowing that C is a multiple
of 16 lets the compiler prove the rows aligned and load 16 bytes per thread
instead of one element (PTX of both kernels, sm_90: 97 scalar global loads
against 8 ``v4`` loads in the backward); a model has a few widths, so a few
compilations. M (the rows) is a runtime argument.
"""
import triton
import triton.language as tl

__all__ = ['ln_fwd_kernel', 'ln_bwd_kernel']


@triton.jit(do_not_specialize=['M'])
def ln_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, stats_ptr, xhat_ptr, M, C, eps,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                  STORE_XHAT: tl.constexpr, STORE_STATS: tl.constexpr):
    """y (and x̂) of BLOCK_M rows; the statistics in one (2, M) buffer:
    mean at ``stats[row]``, rstd at ``stats[M + row]``."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    mask_r = rows < M
    mask_c = cols < C
    mask = mask_r[:, None] & mask_c[None, :]
    offs = rows[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.).to(tl.float32)
    mean = tl.sum(x, 1) / C
    xc = tl.where(mask, x - mean[:, None], 0.)
    rstd = 1. / tl.sqrt(tl.sum(xc * xc, 1) / C + eps)
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    xhat = xc * rstd[:, None]
    y = xhat * w[None, :] + b[None, :]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
    if STORE_XHAT:
        tl.store(
            xhat_ptr + offs, xhat.to(xhat_ptr.dtype.element_ty), mask=mask)
    if STORE_STATS:
        tl.store(stats_ptr + rows, mean, mask=mask_r)
        tl.store(stats_ptr + M + rows, rstd, mask=mask_r)


@triton.jit(do_not_specialize=['M'])
def ln_bwd_kernel(k_ptr, dy_ptr, w_ptr, stats_ptr, dx_ptr, part_ptr, M, C,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
                  SUB: tl.constexpr, XHAT: tl.constexpr):
    """dx for SUB blocks of BLOCK_M rows, and this program's sums of
    dy·x̂ and dy over its rows (row ``pid`` of part, (P, 2, C)). ``k`` is
    x̂ (XHAT) or the input x; ``stats`` the forward's (2, M) mean and
    rstd."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    mask_c = cols < C
    w = tl.load(w_ptr + cols, mask=mask_c, other=0.).to(tl.float32)
    dw = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    db = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for s in tl.static_range(SUB):
        rows = (pid.to(tl.int64) * SUB + s) * BLOCK_M + tl.arange(0, BLOCK_M)
        mask_r = rows < M
        mask = mask_r[:, None] & mask_c[None, :]
        offs = rows[:, None] * C + cols[None, :]
        k = tl.load(k_ptr + offs, mask=mask, other=0.).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.).to(tl.float32)
        rstd = tl.load(stats_ptr + M + rows, mask=mask_r, other=0.)
        if XHAT:
            xhat = k
        else:
            mean = tl.load(stats_ptr + rows, mask=mask_r, other=0.)
            xhat = tl.where(mask, (k - mean[:, None]) * rstd[:, None], 0.)
        wdy = dy * w[None, :]
        c1 = tl.sum(xhat * wdy, 1) / C
        c2 = tl.sum(wdy, 1) / C
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw += dy * xhat
        db += dy
    base = part_ptr + pid.to(tl.int64) * 2 * C + cols
    tl.store(base, tl.sum(dw, 0), mask=mask_c)
    tl.store(base + C, tl.sum(db, 0), mask=mask_c)
