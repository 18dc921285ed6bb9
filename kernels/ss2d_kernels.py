"""Triton kernels of the SS2D core for d_state = 1 (every released VMamba v2
model): a 2-D tiled, three-phase design, deterministic by construction.

With one state per channel each direction k is a first-order recurrence
h_t = a_t·h_{t-1} + b_t along its scan order (rows, columns, both reversed),
with a_t = exp(Δ_t·A_k), b_t = Δ_t·u_t·B_k(t), y_t = C_k(t)·h_t + D_k·u_t and
Δ_t = softplus(W_dt,k·dt_k(t) + bias_k).

A program owns a TH×TW tile of pixels of one image and a block of BD channels.
Inside the tile the four directions are segments: TH row pieces (directions 0
and 2) and TW column pieces (1 and 3). Three phases:

1. ``*_summary_kernel``: for every segment, the product of its decays and its
   end value from a zero start (in closed form: a cumulative sum of Δ and one
   exp per element, no scan).
2. ``chain_kernel``: per (image, direction, channel) a scan over the segment
   summaries in the direction's order gives the carry entering each segment.
3. ``fwd_kernel``/``bwd_kernel``: each tile recomputes its inputs, scans its
   segments from the true carries and merges the four directions in registers
   (forward: y; backward: dx), so the output is written once, in a fixed
   order, without atomics. Reductions over channels (dB, dC, d dt) go through
   a float32 buffer that only the owning program reads and writes; the
   parameter gradients of each program go to a private slice that is summed
   in a fixed order afterwards.

Only the carries (float32, one per segment) are kept for the backward; Δ and
the exps are recomputed. H, W, the tile counts and the strides are runtime
arguments, so a new image size never recompiles.
"""
import triton
import triton.language as tl

# the combine functions of the chunked kernels: (a, b) affine steps, and the
# adjoint g_t = c_t + a_s·g_s (s the step scanned before t) as (value, factor,
# a of the last-scanned step)
from ._scan_kernels import _first_order
from ._scan_kernels import _reverse_first_order as _adjoint

_RUNTIME = [
    'Di', 'H', 'W', 'R', 'nI', 'nJ', 'NSEG', 'sx_b', 'sx_c', 'sx_h', 'sx_w',
    'sd_b', 'sd_p', 'sd_j', 'sw_k', 'sw_c', 'sw_r', 'nseg_r', 'nseg_c', 'BPP',
    'NB'
]


@triton.jit
def _seg_index(k: tl.constexpr, pos, ti, tj, H, W, nI, nJ):
    """Chain index of the segments ``pos`` (rows i for k even, columns j for k
    odd) of tile (ti, tj) in direction k's order."""
    if k == 0:
        n = pos * nJ + tj
    elif k == 2:
        n = (H - 1 - pos) * nJ + (nJ - 1 - tj)
    elif k == 1:
        n = pos * nI + ti
    else:
        n = (W - 1 - pos) * nI + (nI - 1 - ti)
    return n


@triton.jit
def _tile_inputs(k: tl.constexpr, x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr,
                 b, r0, c0, offs_d, mask_d, Di, H, W, R, sx_b, sx_c, sx_h,
                 sx_w, sd_b, sd_p, sd_j, sw_k, sw_c, sw_r, BD: tl.constexpr,
                 TH: tl.constexpr, TW: tl.constexpr, RP: tl.constexpr,
                 DOT_PREC: tl.constexpr):
    """Direction k's inputs on a tile: u, z (pre-softplus Δ), Δ (0 outside),
    B_k, C_k (TH, TW), A_k (BD,), the dt-rank tile (RP, TH·TW) and W_k."""
    ii = tl.arange(0, TH)
    jj = tl.arange(0, TW)
    rows = r0 + ii
    cols = c0 + jj
    pmask = (rows < H)[:, None] & (cols < W)[None, :]
    mask = mask_d[:, None, None] & pmask[None, :, :]
    u = tl.load(
        x_ptr + b * sx_b + offs_d[:, None, None] * sx_c +
        (rows[:, None] * sx_h + cols[None, :] * sx_w)[None, :, :],
        mask=mask,
        other=0.).to(tl.float32)
    Jn = R + 2
    pix = rows[:, None] * W + cols[None, :]  # (TH, TW)
    pbase = xdbl_ptr + b * sd_b + pix * sd_p + k * Jn * sd_j
    Bk = tl.load(pbase + R * sd_j, mask=pmask, other=0.).to(tl.float32)
    Ck = tl.load(pbase + (R + 1) * sd_j, mask=pmask, other=0.).to(tl.float32)
    # dt-rank vectors of the tile's pixels, flattened row-major: (RP, TH·TW)
    q = tl.arange(0, TH * TW)
    qr = r0 + q // TW
    qc = c0 + q % TW
    qmask = (qr < H) & (qc < W)
    offs_r = tl.arange(0, RP)
    dtr = tl.load(
        xdbl_ptr + b * sd_b + (qr * W + qc)[None, :] * sd_p +
        (k * Jn + offs_r)[:, None] * sd_j,
        mask=(offs_r < R)[:, None] & qmask[None, :],
        other=0.)
    w = tl.load(
        w_ptr + k * sw_k + offs_d[:, None] * sw_c + offs_r[None, :] * sw_r,
        mask=mask_d[:, None] & (offs_r < R)[None, :],
        other=0.)
    if DOT_PREC == 'ieee':
        z = tl.dot(w.to(tl.float32), dtr.to(tl.float32), input_precision='ieee')
    else:  # 16-bit dt vectors: tensor cores, float32 accumulation
        z = tl.dot(w.to(dtr.dtype), dtr)
    ch = k * Di + offs_d
    bias = tl.load(bias_ptr + ch, mask=mask_d, other=0.)
    A = tl.load(a_ptr + ch, mask=mask_d, other=0.)
    z = tl.reshape(z, (BD, TH, TW)) + bias[:, None, None]
    delta = tl.where(z > 20., z, tl.log(1. + tl.exp(tl.minimum(z, 20.))))
    delta = tl.where(mask, delta, 0.)
    return u, z, delta, Bk, Ck, A, dtr, w, mask, pmask


@triton.jit
def _summary(k: tl.constexpr, delta, c, A, ADJ: tl.constexpr):
    """(decay product, end value from a zero carry) of every segment.

    Forward (``ADJ`` False): c = Δ·u·B, the value leaving the segment is h
    at its last step in direction k's order. Adjoint: c = C·gy, the value
    leaving is a·g at its last step in the adjoint's order (the reverse of k).
    Closed forms with exponents ≤ 0 (A < 0), so nothing overflows.
    """
    AX: tl.constexpr = 2 if k % 2 == 0 else 1
    cum = tl.cumsum(delta, AX)
    if AX == 2:
        tot = tl.sum(delta, 2)[:, :, None]
    else:
        tot = tl.sum(delta, 1)[:, None, :]
    Ab = A[:, None, None]
    # the segment is walked forward along the axis (k < 2 and not ADJ, or
    # k >= 2 and ADJ) or backward
    if (k < 2) != ADJ:
        if ADJ:
            e = tl.exp(Ab * (tot - cum + delta))
        else:
            e = tl.exp(Ab * (tot - cum))
    else:
        if ADJ:
            e = tl.exp(Ab * cum)
        else:
            e = tl.exp(Ab * (cum - delta))
    S = tl.sum(c * e, AX)
    P = tl.exp(A[:, None] * tl.sum(delta, AX))
    return P, S


@triton.jit
def _seg_offs(k: tl.constexpr, b, offs_d, mask_d, ti, tj, r0, c0, Di, H, W, nI,
              nJ, NSEG, TH: tl.constexpr, TW: tl.constexpr,
              ADJ: tl.constexpr):
    """Offsets (BD, TH) or (BD, TW) into a (B, 4, NSEG, Di) segment buffer,
    and their mask."""
    if k % 2 == 0:
        pos = r0 + tl.arange(0, TH)
        valid = pos < H
    else:
        pos = c0 + tl.arange(0, TW)
        valid = pos < W
    # the adjoint of direction k runs in the order of direction k ^ 2
    kk: tl.constexpr = (k ^ 2) if ADJ else k
    n = _seg_index(kk, pos, ti, tj, H, W, nI, nJ)
    n = tl.where(valid, n, 0)
    offs = ((b * 4 + k) * NSEG + n[None, :]) * Di + offs_d[:, None]
    return offs, mask_d[:, None] & valid[None, :]


@triton.jit
def _tile_coords(pid_t, nJ, TH: tl.constexpr, TW: tl.constexpr):
    ti = pid_t // nJ
    tj = pid_t % nJ
    return ti, tj, ti * TH, tj * TW


@triton.jit(do_not_specialize=_RUNTIME)
def fwd_summary_kernel(x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, p_ptr, s_ptr,
                       Di, H, W, R, nI, nJ, NSEG, sx_b, sx_c, sx_h, sx_w,
                       sd_b, sd_p, sd_j, sw_k, sw_c, sw_r, BD: tl.constexpr,
                       TH: tl.constexpr, TW: tl.constexpr, RP: tl.constexpr,
                       DOT_PREC: tl.constexpr):
    """Phase 1 of the forward: segment summaries of the four directions."""
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = tl.program_id(2) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    ti, tj, r0, c0 = _tile_coords(pid_t, nJ, TH, TW)
    for k in tl.static_range(4):
        u, z, delta, Bk, Ck, A, dtr, w, mask, pmask = _tile_inputs(
            k, x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, b, r0, c0, offs_d,
            mask_d, Di, H, W, R, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p, sd_j,
            sw_k, sw_c, sw_r, BD, TH, TW, RP, DOT_PREC)
        P, S = _summary(k, delta, delta * u * Bk[None, :, :], A, False)
        offs, m = _seg_offs(k, b, offs_d, mask_d, ti, tj, r0, c0, Di, H, W, nI,
                            nJ, NSEG, TH, TW, False)
        tl.store(p_ptr + offs, P, mask=m)
        tl.store(s_ptr + offs, S, mask=m)


@triton.jit(do_not_specialize=_RUNTIME)
def chain_kernel(p_ptr, s_ptr, c_ptr, Di, NSEG, nseg_r, nseg_c,
                 BD: tl.constexpr, SB: tl.constexpr):
    """Phase 2: carry[n] = P[n-1]·carry[n-1] + S[n-1], carry[0] = 0, along
    the segments of one (image, direction) for BD channels."""
    pid_bk = tl.program_id(0)
    k = pid_bk % 4
    offs_d = tl.program_id(1) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    nseg = tl.where(k % 2 == 0, nseg_r, nseg_c)
    base = pid_bk.to(tl.int64) * NSEG * Di
    carry = tl.zeros((BD, ), dtype=tl.float32)
    tl.store(c_ptr + base + offs_d, carry, mask=mask_d)
    idx = tl.arange(0, SB)
    for n0 in range(0, nseg, SB):
        n = n0 + idx
        m = (n < nseg)[:, None] & mask_d[None, :]
        offs = base + n[:, None] * Di + offs_d[None, :]
        P = tl.load(p_ptr + offs, mask=m, other=1.)
        S = tl.load(s_ptr + offs, mask=m, other=0.)
        S = tl.where(idx[:, None] == 0, S + P * carry[None, :], S)
        _, h = tl.associative_scan((P, S), 0, _first_order)
        # h[n] is the carry of segment n + 1
        tl.store(
            c_ptr + offs + Di, h, mask=((n + 1) < nseg)[:, None] & m)
        carry = tl.sum(tl.where(idx[:, None] == SB - 1, h, 0.), 0)


@triton.jit
def _inject(k: tl.constexpr, v, coef, carry, TH: tl.constexpr,
            TW: tl.constexpr, FIRST_FWD: tl.constexpr):
    """v + coef·carry at each segment's first step in the scan order (the
    first index along the axis when ``FIRST_FWD``, else the last)."""
    if k % 2 == 0:
        pos = tl.arange(0, TW)[None, None, :]
        at = 0 if FIRST_FWD else TW - 1
        cb = carry[:, :, None]
    else:
        pos = tl.arange(0, TH)[None, :, None]
        at = 0 if FIRST_FWD else TH - 1
        cb = carry[:, None, :]
    return tl.where(pos == at, v + coef * cb, v)


@triton.jit
def _scan_h(k: tl.constexpr, a, bu, carry, TH: tl.constexpr,
            TW: tl.constexpr):
    """States h of direction k on the tile from the carries entering it."""
    AX: tl.constexpr = 2 if k % 2 == 0 else 1
    REV: tl.constexpr = k >= 2
    bu = _inject(k, bu, a, carry, TH, TW, not REV)
    _, h = tl.associative_scan((a, bu), AX, _first_order, reverse=REV)
    return h


@triton.jit
def _scan_g(k: tl.constexpr, a, c, ein, TH: tl.constexpr, TW: tl.constexpr):
    """Adjoint g_t = c_t + a_s·g_s (s the step after t in direction k's
    order) on the tile, from the chained values entering each segment."""
    AX: tl.constexpr = 2 if k % 2 == 0 else 1
    REV: tl.constexpr = k < 2  # the adjoint runs against direction k
    c = _inject(k, c, 1., ein, TH, TW, not REV)
    g, _, _ = tl.associative_scan((c, tl.full(a.shape, 1., tl.float32), a),
                                  AX,
                                  _adjoint,
                                  reverse=REV)
    return g


@triton.jit(do_not_specialize=_RUNTIME)
def fwd_kernel(x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, d_ptr, carry_ptr,
               y_ptr, Di, H, W, R, nI, nJ, NSEG, sx_b, sx_c, sx_h, sx_w, sd_b,
               sd_p, sd_j, sw_k, sw_c, sw_r, BD: tl.constexpr,
               TH: tl.constexpr, TW: tl.constexpr, RP: tl.constexpr,
               DOT_PREC: tl.constexpr):
    """Phase 3 of the forward: y = Σ_k C_k·h_k + D_k·u, written once (y has
    x's strides)."""
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = tl.program_id(2) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    ti, tj, r0, c0 = _tile_coords(pid_t, nJ, TH, TW)
    y = tl.zeros((BD, TH, TW), dtype=tl.float32)
    dsum = tl.zeros((BD, ), dtype=tl.float32)
    for k in tl.static_range(4):
        u, z, delta, Bk, Ck, A, dtr, w, mask, pmask = _tile_inputs(
            k, x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, b, r0, c0, offs_d,
            mask_d, Di, H, W, R, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p, sd_j,
            sw_k, sw_c, sw_r, BD, TH, TW, RP, DOT_PREC)
        offs, m = _seg_offs(k, b, offs_d, mask_d, ti, tj, r0, c0, Di, H, W, nI,
                            nJ, NSEG, TH, TW, False)
        carry = tl.load(carry_ptr + offs, mask=m, other=0.)
        a = tl.exp(delta * A[:, None, None])
        h = _scan_h(k, a, delta * u * Bk[None, :, :], carry, TH, TW)
        y += Ck[None, :, :] * h
        dsum += tl.load(d_ptr + k * Di + offs_d, mask=mask_d, other=0.)
    y += dsum[:, None, None] * u
    rows = r0 + tl.arange(0, TH)
    cols = c0 + tl.arange(0, TW)
    tl.store(
        y_ptr + b * sx_b + offs_d[:, None, None] * sx_c +
        (rows[:, None] * sx_h + cols[None, :] * sx_w)[None, :, :],
        y,
        mask=mask)


@triton.jit(do_not_specialize=_RUNTIME)
def bwd_summary_kernel(x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, gy_ptr, p_ptr,
                       s_ptr, Di, H, W, R, nI, nJ, NSEG, sx_b, sx_c, sx_h,
                       sx_w, sd_b, sd_p, sd_j, sw_k, sw_c, sw_r,
                       BD: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                       RP: tl.constexpr, DOT_PREC: tl.constexpr):
    """Phase 1 of the backward: segment summaries of the four adjoints (gy
    has x's strides, float32)."""
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = tl.program_id(2) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    ti, tj, r0, c0 = _tile_coords(pid_t, nJ, TH, TW)
    rows = r0 + tl.arange(0, TH)
    cols = c0 + tl.arange(0, TW)
    for k in tl.static_range(4):
        u, z, delta, Bk, Ck, A, dtr, w, mask, pmask = _tile_inputs(
            k, x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, b, r0, c0, offs_d,
            mask_d, Di, H, W, R, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p, sd_j,
            sw_k, sw_c, sw_r, BD, TH, TW, RP, DOT_PREC)
        gy = tl.load(
            gy_ptr + b * sx_b + offs_d[:, None, None] * sx_c +
            (rows[:, None] * sx_h + cols[None, :] * sx_w)[None, :, :],
            mask=mask,
            other=0.)
        P, S = _summary(k, delta, Ck[None, :, :] * gy, A, True)
        offs, m = _seg_offs(k, b, offs_d, mask_d, ti, tj, r0, c0, Di, H, W, nI,
                            nJ, NSEG, TH, TW, True)
        tl.store(p_ptr + offs, P, mask=m)
        tl.store(s_ptr + offs, S, mask=m)


@triton.jit(do_not_specialize=_RUNTIME)
def bwd_kernel(x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, d_ptr, gy_ptr,
               carry_ptr, adj_ptr, dx_ptr, dxdbl_ptr, dw_ptr, dvec_ptr, Di, H,
               W, R, nI, nJ, NSEG, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p, sd_j,
               sw_k, sw_c, sw_r, BPP, NB, BD: tl.constexpr, TH: tl.constexpr,
               TW: tl.constexpr, RP: tl.constexpr, DOT_PREC: tl.constexpr):
    """Phase 3 of the backward.

    A program owns one tile of BPP images and all channels. dx (x's strides)
    is written once; dB, dC and d dt of its pixels accumulate over the
    channel blocks in ``dxdbl`` (float32, x_dbl's strides, zeroed); its
    parameter gradients accumulate in its own slices of ``dw`` (P, 4, Di,
    RP) and ``dvec`` (P, 3, 4, Di: dA, dD, dbias), both zeroed.
    """
    pid_t = tl.program_id(0)
    pid_b = tl.program_id(1)
    prog = pid_b.to(tl.int64) * tl.num_programs(0) + pid_t
    ti, tj, r0, c0 = _tile_coords(pid_t, nJ, TH, TW)
    rows = r0 + tl.arange(0, TH)
    cols = c0 + tl.arange(0, TW)
    q = tl.arange(0, TH * TW)
    qr = r0 + q // TW
    qc = c0 + q % TW
    qmask = (qr < H) & (qc < W)
    offs_r = tl.arange(0, RP)
    Jn = R + 2
    pmask = (rows < H)[:, None] & (cols < W)[None, :]
    pix = rows[:, None] * W + cols[None, :]
    b_end = tl.minimum(pid_b * BPP + BPP, NB)
    for bb in range(pid_b * BPP, b_end):
        b = (pid_b * 0 + bb).to(tl.int64)
        for d0 in range(0, Di, BD):
            # the read-add-writes below meet the previous block's writes
            tl.debug_barrier()
            offs_d = d0 + tl.arange(0, BD)
            mask_d = offs_d < Di
            xoff = (b * sx_b + offs_d[:, None, None] * sx_c +
                    (rows[:, None] * sx_h + cols[None, :] * sx_w)[None, :, :])
            dx = tl.zeros((BD, TH, TW), dtype=tl.float32)
            for k in tl.static_range(4):
                u, z, delta, Bk, Ck, A, dtr, w, mask, _ = _tile_inputs(
                    k, x_ptr, xdbl_ptr, w_ptr, bias_ptr, a_ptr, b, r0, c0,
                    offs_d, mask_d, Di, H, W, R, sx_b, sx_c, sx_h, sx_w, sd_b,
                    sd_p, sd_j, sw_k, sw_c, sw_r, BD, TH, TW, RP, DOT_PREC)
                gy = tl.load(gy_ptr + xoff, mask=mask, other=0.)
                offs, m = _seg_offs(k, b, offs_d, mask_d, ti, tj, r0, c0, Di, H,
                                    W, nI, nJ, NSEG, TH, TW, False)
                carry = tl.load(carry_ptr + offs, mask=m, other=0.)
                a = tl.exp(delta * A[:, None, None])
                bu = delta * u * Bk[None, :, :]
                h = _scan_h(k, a, bu, carry, TH, TW)
                ah = h - bu  # a_t·h_{t-1}
                offs, m = _seg_offs(k, b, offs_d, mask_d, ti, tj, r0, c0, Di, H,
                                    W, nI, nJ, NSEG, TH, TW, True)
                ein = tl.load(adj_ptr + offs, mask=m, other=0.)
                g = _scan_g(k, a, Ck[None, :, :] * gy, ein, TH, TW)
                Dk = tl.load(d_ptr + k * Di + offs_d, mask=mask_d, other=0.)
                dx += g * delta * Bk[None, :, :] + Dk[:, None, None] * gy
                ddelta = g * (ah * A[:, None, None] + u * Bk[None, :, :])
                dz = tl.where(mask, ddelta * tl.sigmoid(z), 0.)
                # per-channel sums over the tile
                dA = tl.sum(tl.sum(g * ah * delta, 2), 1)
                dD = tl.sum(tl.sum(gy * u, 2), 1)
                dbias = tl.sum(tl.sum(dz, 2), 1)
                vbase = dvec_ptr + prog * 12 * Di + k * Di + offs_d
                for v in tl.static_range(3):
                    val = dA if v == 0 else (dD if v == 1 else dbias)
                    old = tl.load(vbase + v * 4 * Di, mask=mask_d, other=0.)
                    tl.store(vbase + v * 4 * Di, old + val, mask=mask_d)
                dzf = tl.reshape(dz, (BD, TH * TW))
                wb = (dw_ptr + ((prog * 4 + k) * Di + offs_d[:, None]) * RP +
                      offs_r[None, :])
                wm = mask_d[:, None]
                dW = tl.dot(
                    dzf, tl.trans(dtr.to(tl.float32)), input_precision=DOT_PREC)
                tl.store(wb, tl.load(wb, mask=wm, other=0.) + dW, mask=wm)
                # per-pixel sums over the channels: d dt, dB, dC
                ddtr = tl.dot(
                    tl.trans(w.to(tl.float32)), dzf, input_precision=DOT_PREC)
                rb = (dxdbl_ptr + b * sd_b + (qr * W + qc)[None, :] * sd_p +
                      (k * Jn + offs_r)[:, None] * sd_j)
                rm = (offs_r < R)[:, None] & qmask[None, :]
                tl.store(rb, tl.load(rb, mask=rm, other=0.) + ddtr, mask=rm)
                pb = dxdbl_ptr + b * sd_b + pix * sd_p + (k * Jn + R) * sd_j
                dB = tl.sum(g * delta * u, 0)
                tl.store(pb, tl.load(pb, mask=pmask, other=0.) + dB,
                         mask=pmask)
                dC = tl.sum(gy * h, 0)
                pb += sd_j
                tl.store(pb, tl.load(pb, mask=pmask, other=0.) + dC,
                         mask=pmask)
            tl.store(dx_ptr + xoff, dx.to(dx_ptr.dtype.element_ty), mask=mask)
