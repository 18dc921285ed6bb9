"""Triton kernels of the SS2D core for d_state = 1 (every released VMamba v2
model): one channel per thread, time walked inside the thread, three phases,
deterministic by construction.

With one state per channel each direction k is a first-order recurrence
h_t = a_t·h_{t-1} + b_t along its scan order, with a_t = exp(Δ_t·A_k),
b_t = Δ_t·u_t·B_k(t), y_t = C_k(t)·h_t + D_k·u_t and Δ_t = softplus(z_t),
z = W_dt,k·dt_k(t) + bias_k.

The dt projection z (before the bias) of the four directions is one batched
GEMM outside the kernels, (4, B·L, R) @ (4, R, Di), stored in x's dtype and
read by the kernels as coalesced channel vectors; its gradient dz is written
by the backward kernel and turned into d dt-rank and dW_dt by two more
batched GEMMs. (Computing z inside the kernels costs every thread R
broadcast loads per time step: measured 2–4× slower at batch 128, see
docs/benchmarks.md.)

The four directions come in two *pairs* that visit the pixels in one order,
forwards and backwards: pair 0 = directions 0 and 2 (row-major pixel order
q → pixel q), pair 1 = directions 1 and 3 (column-major: q → (q % H)·W +
q // H). A tile is a chunk of T consecutive positions q of one image and BD
channels, held as a (T, BD) block with one channel per thread and the T time
steps in the thread's registers: the scans along time are sequential walks
inside a thread (no cross-lane tree), and the loads of a pixel's channels are
coalesced. Both directions of a pair are computed on the same tile. Three
phases:

1. ``summary_kernel``: per chunk and direction, the product of the decays
   and the end value from a zero start.
2. ``chain_kernel``: per (image, direction, channel) a scan over the chunk
   summaries in the direction's order gives the carry entering each chunk.
3. ``fwd_kernel``/``bwd_kernel``: each tile rescans from the true carries.
   The pair-0 launch writes the output (y, or dx), the pair-1 launch adds to
   it: the four directions meet in a fixed order, without atomics. The
   backward is a persistent grid: a program walks tiles and keeps dA, dD and
   dbias of its channels in registers, written once to a private slice and
   summed in a fixed order afterwards; dB and dC of every pixel (sums over
   channels) go to one slice per channel block, summed the same way.

Only the carries (float32, one per chunk and direction) are kept for the
backward; z is recomputed by its GEMM, Δ and the exps in the kernels. H, W,
L and the strides are runtime arguments, so a new image size never
recompiles; the channel strides too, which keeps the compiler from spreading
a thread's work over channels (with a stride known to be 1 it vectorises
channels into a thread and puts time across lanes).
"""
import triton
import triton.language as tl

# the combine functions of the chunked kernels: (a, b) affine steps, and the
# adjoint g_t = c_t + a_s·g_s (s the step scanned before t) as (value, factor,
# a of the last-scanned step)
from ._scan_kernels import _first_order
from ._scan_kernels import _reverse_first_order as _adjoint

_RUNTIME = [
    'pair', 'Di', 'H', 'W', 'L', 'R', 'NCH', 'sx_b', 'sx_c', 'sx_h', 'sx_w',
    'sd_b', 'sd_p', 'sd_j', 'sz_k', 'sz_b', 'sz_p', 'sz_c', 'NB', 'NPROG'
]


@triton.jit
def _pixels(pair, c, H, W, L, T: tl.constexpr):
    """Rows, columns, pixel indices and validity of chunk c of a pair.

    One integer division per program (the chunk start); the T steps from
    there by a float quotient of small integers, exact (an integer division
    per element would cost more than the scan)."""
    q0 = c * T
    n = tl.where(pair == 0, W, H)  # the pair's inner extent
    i = q0 % n + tl.arange(0, T)
    k = tl.floor((i.to(tl.float32) + 0.5) * (1. / n.to(tl.float32)))
    k = k.to(tl.int32)
    outer = q0 // n + k
    inner = i - k * n
    hh = tl.where(pair == 0, outer, inner)
    ww = tl.where(pair == 0, inner, outer)
    return hh, ww, hh * W + ww, q0 + tl.arange(0, T) < L


@triton.jit
def _tile_offsets(b, hh, ww, valid, offs_d, mask_d, sx_b, sx_c, sx_h, sx_w):
    """(image offset, int32 (T, BD) offsets inside the image, mask) of a
    tile in a tensor with x's strides."""
    xo = (hh * sx_h + ww * sx_w)[:, None] + offs_d[None, :] * sx_c
    return b * sx_b, xo, valid[:, None] & mask_d[None, :]


@triton.jit
def _inputs(k, z_ptr, xdbl_ptr, bias_ptr, a_ptr, b, p, valid, offs_d, mask_d,
            m, Di, R, sd_b, sd_p, sd_j, sz_k, sz_b, sz_p, sz_c):
    """Direction k on a tile: z (pre-softplus Δ, bias added), Δ (0 outside),
    B_k, C_k (T,), A_k (BD,), and z's offsets."""
    Jn = R + 2
    base = xdbl_ptr + b * sd_b + p * sd_p + k * Jn * sd_j
    Bk = tl.load(base + R * sd_j, mask=valid, other=0.).to(tl.float32)
    Ck = tl.load(base + (R + 1) * sd_j, mask=valid, other=0.).to(tl.float32)
    ch = k * Di + offs_d
    zb = k * sz_k + b * sz_b
    zo = (p * sz_p)[:, None] + offs_d[None, :] * sz_c
    z = tl.load((z_ptr + zb) + zo, mask=m, other=0.).to(tl.float32)
    z += tl.load(bias_ptr + ch, mask=mask_d, other=0.)[None, :]
    A = tl.load(a_ptr + ch, mask=mask_d, other=0.)
    delta = tl.where(z > 20., z, tl.log(1. + tl.exp(tl.minimum(z, 20.))))
    delta = tl.where(m, delta, 0.)
    return z, delta, Bk, Ck, A, zb, zo


@triton.jit
def _row(v, i: tl.constexpr, T: tl.constexpr):
    """Row i of a (T, BD) block (a selection inside each thread)."""
    return tl.sum(tl.where(tl.arange(0, T)[:, None] == i, v, 0.), 0)


@triton.jit
def _at(v, add, i: tl.constexpr, T: tl.constexpr):
    """v with ``add`` (BD,) added to row i."""
    return tl.where(tl.arange(0, T)[:, None] == i, v + add[None, :], v)


@triton.jit
def _scan_h(a, bu, carry, REV: tl.constexpr, T: tl.constexpr):
    """States h on the tile from the carry entering it (forward in q, or
    backward when ``REV``)."""
    FIRST: tl.constexpr = T - 1 if REV else 0
    bu = _at(bu, _row(a, FIRST, T) * carry, FIRST, T)
    _, h = tl.associative_scan((a, bu), 0, _first_order, reverse=REV)
    return h


@triton.jit
def _first_exact(ah, a, carry, first, T: tl.constexpr):
    """a_t·h_{t-1} computed as h - b, with the chunk's first valid step in
    the scan order (``first``) set to exactly a·carry: 0 from a zero start,
    whatever the rounding of h - b."""
    at = tl.arange(0, T)[:, None] == first
    return tl.where(at, (a * carry[None, :]), ah)


@triton.jit
def _scan_g(a, c, ein, REV: tl.constexpr, T: tl.constexpr):
    """Adjoint of a direction scanned forward in q (or backward when
    ``REV``): g_t = c_t + a_s·g_s, s the step after t in the direction, from
    the chained value ``ein`` entering the tile. Returns (g, a·g)."""
    # the adjoint walks against the direction
    FIRST: tl.constexpr = 0 if REV else T - 1
    c = _at(c, ein, FIRST, T)
    g, _, al = tl.associative_scan((c, tl.full(a.shape, 1., tl.float32), a),
                                   0,
                                   _adjoint,
                                   reverse=not REV)
    return g, al * g


@triton.jit
def _seg(b, k, n, NCH, Di, offs_d):
    """Offsets into a (B, 4, NCH, Di) chunk buffer."""
    return ((b * 4 + k) * NCH + n) * Di + offs_d


@triton.jit(do_not_specialize=_RUNTIME)
def summary_kernel(v_ptr, xdbl_ptr, z_ptr, bias_ptr, a_ptr, p_ptr, s_ptr, Di,
                   H, W, L, R, NCH, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p, sd_j,
                   sz_k, sz_b, sz_p, sz_c, BD: tl.constexpr, T: tl.constexpr,
                   ADJ: tl.constexpr):
    """Phase 1: chunk summaries (decay product, end value from a zero start)
    of the four directions. Forward: v is x and the value is h = Σ of
    Δ·u·B. Backward (``ADJ``): v is gy (float32, x's strides), the value is
    a·g of the adjoint, which runs in the order of direction k ^ 2."""
    c = tl.program_id(0)
    pair = tl.program_id(1) % 2
    b = (tl.program_id(1) // 2).to(tl.int64)
    offs_d = tl.program_id(2) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    hh, ww, p, valid = _pixels(pair, c, H, W, L, T)
    xb, xo, m = _tile_offsets(b, hh, ww, valid, offs_d, mask_d, sx_b, sx_c,
                              sx_h, sx_w)
    v = tl.load((v_ptr + xb) + xo, mask=m, other=0.).to(tl.float32)
    for kk in tl.static_range(2):
        k = pair + 2 * kk
        z, delta, Bk, Ck, A, zb, zo = _inputs(k, z_ptr, xdbl_ptr, bias_ptr,
                                              a_ptr, b, p, valid, offs_d,
                                              mask_d, m, Di, R, sd_b, sd_p,
                                              sd_j, sz_k, sz_b, sz_p, sz_c)
        a = tl.exp(delta * A[None, :])
        # the value leaves the chunk at q = 0 when the scan runs backwards in
        # q: direction 2/3, or the adjoint of direction 0/1
        if ADJ:
            _, val = _scan_g(a, Ck[:, None] * v, tl.zeros_like(A), kk == 1, T)
            S = _row(val, T - 1 if kk == 1 else 0, T)
            n = c if kk == 1 else NCH - 1 - c
        else:
            _, val = tl.associative_scan((a, delta * v * Bk[:, None]),
                                         0,
                                         _first_order,
                                         reverse=kk == 1)
            S = _row(val, 0 if kk == 1 else T - 1, T)
            n = NCH - 1 - c if kk == 1 else c
        offs = _seg(b, k, n, NCH, Di, offs_d)
        tl.store(p_ptr + offs, tl.exp(A * tl.sum(delta, 0)), mask=mask_d)
        tl.store(s_ptr + offs, S, mask=mask_d)


@triton.jit(do_not_specialize=_RUNTIME)
def chain_kernel(p_ptr, s_ptr, c_ptr, Di, NCH, BD: tl.constexpr,
                 SB: tl.constexpr):
    """Phase 2: carry[n] = P[n-1]·carry[n-1] + S[n-1], carry[0] = 0, along
    the NCH chunks of one (image, direction) for BD channels."""
    offs_d = tl.program_id(1) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    base = tl.program_id(0).to(tl.int64) * NCH * Di
    carry = tl.zeros((BD, ), dtype=tl.float32)
    tl.store(c_ptr + base + offs_d, carry, mask=mask_d)
    idx = tl.arange(0, SB)
    for n0 in range(0, NCH, SB):
        n = n0 + idx
        m = (n < NCH)[:, None] & mask_d[None, :]
        offs = base + n[:, None] * Di + offs_d[None, :]
        P = tl.load(p_ptr + offs, mask=m, other=1.)
        S = tl.load(s_ptr + offs, mask=m, other=0.)
        S = tl.where(idx[:, None] == 0, S + P * carry[None, :], S)
        _, h = tl.associative_scan((P, S), 0, _first_order)
        # h[n] is the carry of segment n + 1
        tl.store(
            c_ptr + offs + Di, h, mask=((n + 1) < NCH)[:, None] & m)
        carry = tl.sum(tl.where(idx[:, None] == SB - 1, h, 0.), 0)


@triton.jit(do_not_specialize=_RUNTIME)
def fwd_kernel(x_ptr, xdbl_ptr, z_ptr, bias_ptr, a_ptr, d_ptr, carry_ptr,
               y_ptr, pair, Di, H, W, L, R, NCH, sx_b, sx_c, sx_h, sx_w, sd_b,
               sd_p, sd_j, sz_k, sz_b, sz_p, sz_c, BD: tl.constexpr,
               T: tl.constexpr, ACC: tl.constexpr):
    """Phase 3 of the forward for one pair: its two directions' C·h + D·u,
    stored into y (pair 0) or added to it (``ACC``, pair 1). y float32 with
    x's strides."""
    c = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = tl.program_id(2) * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    hh, ww, p, valid = _pixels(pair, c, H, W, L, T)
    xb, xo, m = _tile_offsets(b, hh, ww, valid, offs_d, mask_d, sx_b, sx_c,
                              sx_h, sx_w)
    u = tl.load((x_ptr + xb) + xo, mask=m, other=0.).to(tl.float32)
    Dsum = (tl.load(d_ptr + pair * Di + offs_d, mask=mask_d, other=0.) +
            tl.load(d_ptr + (pair + 2) * Di + offs_d, mask=mask_d, other=0.))
    y = Dsum[None, :] * u
    for kk in tl.static_range(2):
        k = pair + 2 * kk
        z, delta, Bk, Ck, A, zb, zo = _inputs(k, z_ptr, xdbl_ptr, bias_ptr,
                                              a_ptr, b, p, valid, offs_d,
                                              mask_d, m, Di, R, sd_b, sd_p,
                                              sd_j, sz_k, sz_b, sz_p, sz_c)
        n = c if kk == 0 else NCH - 1 - c
        carry = tl.load(carry_ptr + _seg(b, k, n, NCH, Di, offs_d),
                        mask=mask_d, other=0.)
        a = tl.exp(delta * A[None, :])
        h = _scan_h(a, delta * u * Bk[:, None], carry, kk == 1, T)
        y += Ck[:, None] * h
    if ACC:
        y += tl.load((y_ptr + xb) + xo, mask=m, other=0.)
    tl.store((y_ptr + xb) + xo, y, mask=m)


@triton.jit(do_not_specialize=_RUNTIME)
def bwd_kernel(x_ptr, xdbl_ptr, z_ptr, bias_ptr, a_ptr, d_ptr, gy_ptr,
               carry_ptr, adj_ptr, dx32_ptr, dx_ptr, dz_ptr, dbc_ptr, dvec_ptr,
               pair, Di, H, W, L, R, NCH, sx_b, sx_c, sx_h, sx_w, sd_b, sd_p,
               sd_j, sz_k, sz_b, sz_p, sz_c, NB, NPROG, BD: tl.constexpr,
               T: tl.constexpr, ACC: tl.constexpr):
    """Phase 3 of the backward for one pair, persistent: program (i, j)
    walks the tiles i, i + NPROG, ... of the NB·NCH chunks for channel block
    j (measured faster than one tile per program with per-tile partial
    sums).

    dx: pair 0 stores its part in ``dx32`` (float32, x's strides), pair 1
    (``ACC``) adds it and writes ``dx`` (x's dtype). ``dz`` (z's layout and
    dtype) receives dL/dz; ``dbc`` (nd, B, L, 4, 2, float32) this block's dB
    and dC of every pixel; ``dvec`` (NPROG, 3, 4·Di: dA, dD, dbias) the
    program's parameter gradients. Every entry is written once.
    """
    pid = tl.program_id(0)
    blk = tl.program_id(1)
    offs_d = blk * BD + tl.arange(0, BD)
    mask_d = offs_d < Di
    dA0 = tl.zeros((BD, ), dtype=tl.float32)
    dA1 = tl.zeros((BD, ), dtype=tl.float32)
    db0 = tl.zeros((BD, ), dtype=tl.float32)
    db1 = tl.zeros((BD, ), dtype=tl.float32)
    dD = tl.zeros((BD, ), dtype=tl.float32)
    Dsum = (tl.load(d_ptr + pair * Di + offs_d, mask=mask_d, other=0.) +
            tl.load(d_ptr + (pair + 2) * Di + offs_d, mask=mask_d, other=0.))
    for tile in range(pid, NB * NCH, NPROG):
        b = (tile // NCH).to(tl.int64)
        c = tile % NCH
        hh, ww, p, valid = _pixels(pair, c, H, W, L, T)
        xb, xo, m = _tile_offsets(b, hh, ww, valid, offs_d, mask_d, sx_b,
                                  sx_c, sx_h, sx_w)
        u = tl.load((x_ptr + xb) + xo, mask=m, other=0.).to(tl.float32)
        gy = tl.load((gy_ptr + xb) + xo, mask=m, other=0.)
        dD += tl.sum(gy * u, 0)
        dx = Dsum[None, :] * gy
        pbase = dbc_ptr + ((blk * NB + b) * L + p) * 8  # (T,)
        for kk in tl.static_range(2):
            k = pair + 2 * kk
            z, delta, Bk, Ck, A, zb, zo = _inputs(
                k, z_ptr, xdbl_ptr, bias_ptr, a_ptr, b, p, valid, offs_d,
                mask_d, m, Di, R, sd_b, sd_p, sd_j, sz_k, sz_b, sz_p, sz_c)
            n = c if kk == 0 else NCH - 1 - c
            carry = tl.load(carry_ptr + _seg(b, k, n, NCH, Di, offs_d),
                            mask=mask_d, other=0.)
            ein = tl.load(adj_ptr + _seg(b, k, NCH - 1 - n, NCH, Di, offs_d),
                          mask=mask_d, other=0.)
            a = tl.exp(delta * A[None, :])
            bu = delta * u * Bk[:, None]
            h = _scan_h(a, bu, carry, kk == 1, T)
            # a_t·h_{t-1}; exact at the chunk's first valid step
            first = 0 if kk == 0 else tl.minimum(T - 1, L - 1 - c * T)
            ah = _first_exact(h - bu, a, carry, first, T)
            g, _ = _scan_g(a, Ck[:, None] * gy, ein, kk == 1, T)
            dx += g * delta * Bk[:, None]
            dz = g * (ah * A[None, :] + u * Bk[:, None]) * tl.sigmoid(z)
            dz = tl.where(m, dz, 0.)
            tl.store((dz_ptr + zb) + zo,
                     dz.to(dz_ptr.dtype.element_ty),
                     mask=m)
            if kk == 0:
                dA0 += tl.sum(g * ah * delta, 0)
                db0 += tl.sum(dz, 0)
            else:
                dA1 += tl.sum(g * ah * delta, 0)
                db1 += tl.sum(dz, 0)
            # per-pixel sums over this block's channels: dB, dC
            tl.store(pbase + k * 2, tl.sum(g * delta * u, 1), mask=valid)
            tl.store(pbase + k * 2 + 1, tl.sum(gy * h, 1), mask=valid)
        if ACC:
            dx += tl.load((dx32_ptr + xb) + xo, mask=m, other=0.)
            tl.store((dx_ptr + xb) + xo,
                     dx.to(dx_ptr.dtype.element_ty),
                     mask=m)
        else:
            tl.store((dx32_ptr + xb) + xo, dx, mask=m)
    # this program's parameter gradients, one private slice
    for kk in tl.static_range(2):
        k = pair + 2 * kk
        vb = dvec_ptr + pid * 12 * Di + k * Di + offs_d
        tl.store(vb, dA0 if kk == 0 else dA1, mask=mask_d)
        tl.store(vb + 4 * Di, dD, mask=mask_d)
        tl.store(vb + 8 * Di, db0 if kk == 0 else db1, mask=mask_d)
