"""Triton kernels of the chunked selective scan, shared by the plain S6 op and the
fused SS2D core.

One program owns ``BD`` channels of one (batch, group) pair and a range of
time chunks (a *split*); a chunk is a (BD, NP, T) tile (channels × states ×
time) scanned with ``tl.associative_scan``. The state is float32 and carried
across chunks in registers.

* ``DIRECTIONAL``: the group is one of the four SS2D directions; time t of
  direction k is mapped to a pixel by index arithmetic (no 4× copies), and the
  output is accumulated into the merged map with atomics.
* ``PROJ``: Δ is recomputed from the dt-rank vectors (``dt·W_dtᵀ``) instead of
  being read, so Δ is never materialised.
* Splits parallelise over time (batch 2 × L≈67k): a first launch with
  ``CARRY_ONLY`` computes every split's end state from zero, the carries are
  chained on the host side (a tiny scan), and the second launch starts each
  split from its true state.
* The forward stores only chunk-start states (``STORE_HS``); the backward
  recomputes each chunk from them and runs the reverse recurrence.

H, W, L, R and the split sizes are runtime arguments (``do_not_specialize``),
so a new image size never recompiles; only N, the channel block and the chunk
length are compile-time.
"""
import triton
import triton.language as tl

_RUNTIME = [
    'DC', 'H', 'W', 'L', 'R', 'NCH', 'CPS', 'su_b', 'su_g', 'su_c', 'su_h',
    'su_w', 'sd_b', 'sd_g', 'sd_c', 'sd_h', 'sd_w', 'sx_b', 'sx_g', 'sx_j',
    'sx_p', 'sy_b', 'sy_g', 'sy_c', 'sy_h', 'sy_w', 'sw_g', 'sw_c', 'sw_r',
    'b_off', 'c_off', 'sb_b', 'sb_g', 'sb_n', 'sb_p'
]


@triton.jit
def _first_order(a1, b1, a2, b2):
    # h = a2 * (a1 * h0 + b1) + b2: composition of two affine steps.
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _reverse_first_order(v1, p1, al1, v2, p2, al2):
    # Reverse recurrence e_t = c_t + a_{t+1} e_{t+1}, scanned from the end:
    # (v, p, al) summarises a segment by its value with zero carry, the decay
    # that multiplies a carry entering it, and the a of its last-scanned step.
    return v2 + p2 * al1 * v1, p2 * al1 * p1, al2


@triton.jit
def _positions(t, g, H, W, L, DIRECTIONAL: tl.constexpr):
    """Row and column of time steps ``t`` in scan direction ``g``."""
    if DIRECTIONAL:
        tt = tl.where(g >= 2, L - 1 - t, t)
        tt = tl.maximum(tt, 0)
        colm = (g % 2) == 1
        hh = tl.where(colm, tt % H, tt // W)
        ww = tl.where(colm, tt // H, tt % W)
    else:
        hh = t * 0
        ww = t
    return hh, ww


@triton.jit
def _chunk_inputs(u_base, d_base, dtr_base, bm_base, cm_base, w_tile, bias,
                  offs_d, mask_d, t, mask_t, hh, ww, W, R, su_c, su_h, su_w,
                  sd_c, sd_h, sd_w, sx_j, sx_p, sb_n, sb_p, b_off, c_off,
                  N: tl.constexpr, NP: tl.constexpr, RP: tl.constexpr,
                  PROJ: tl.constexpr, HAS_BIAS: tl.constexpr,
                  SOFTPLUS: tl.constexpr, DOT_PREC: tl.constexpr):
    """Load one chunk: u, z (pre-softplus Δ), Δ, B, C, and the dt-rank tile."""
    mask = mask_d[:, None] & mask_t[None, :]
    u = tl.load(
        u_base + offs_d[:, None] * su_c + (hh * su_h + ww * su_w)[None, :],
        mask=mask,
        other=0.).to(tl.float32)
    p = hh * W + ww
    offs_n = tl.arange(0, NP)
    mask_nt = (offs_n < N)[:, None] & mask_t[None, :]
    Bt = tl.load(
        bm_base + b_off + offs_n[:, None] * sb_n + p[None, :] * sb_p,
        mask=mask_nt,
        other=0.).to(tl.float32)
    Ct = tl.load(
        cm_base + c_off + offs_n[:, None] * sb_n + p[None, :] * sb_p,
        mask=mask_nt,
        other=0.).to(tl.float32)
    if PROJ:
        offs_r = tl.arange(0, RP)
        dtr = tl.load(
            dtr_base + offs_r[:, None] * sx_j + p[None, :] * sx_p,
            mask=(offs_r < R)[:, None] & mask_t[None, :],
            other=0.)
        if DOT_PREC == 'ieee':
            z = tl.dot(w_tile, dtr.to(tl.float32), input_precision='ieee')
        else:  # 16-bit dt vectors: tensor cores, float32 accumulation
            z = tl.dot(w_tile.to(dtr.dtype), dtr)
    else:
        dtr = tl.zeros((RP, 1), dtype=tl.float32)
        z = tl.load(
            d_base + offs_d[:, None] * sd_c + (hh * sd_h + ww * sd_w)[None, :],
            mask=mask,
            other=0.).to(tl.float32)
    if HAS_BIAS:
        z = z + bias[:, None]
    if SOFTPLUS:
        delta = tl.where(z > 20., z, tl.log(1. + tl.exp(tl.minimum(z, 20.))))
    else:
        delta = z
    delta = tl.where(mask, delta, 0.)
    return u, z, delta, Bt, Ct, dtr


@triton.jit(do_not_specialize=_RUNTIME)
def scan_fwd_kernel(
        u_ptr, d_ptr, x_ptr, w_ptr, a_ptr, dd_ptr, bias_ptr, y_ptr, hs_ptr,
        h0_ptr, hend_ptr, dsum_ptr, DC, H, W, L, R, NCH, CPS, su_b, su_g, su_c,
        su_h, su_w, sd_b, sd_g, sd_c, sd_h, sd_w, sx_b, sx_g, sx_j, sx_p, sy_b,
        sy_g, sy_c, sy_h, sy_w, sw_g, sw_c, sw_r, b_off, c_off, sb_b, sb_g,
        sb_n, sb_p, G: tl.constexpr, N: tl.constexpr, NP: tl.constexpr,
        RP: tl.constexpr, BD: tl.constexpr, T: tl.constexpr,
        DIRECTIONAL: tl.constexpr, PROJ: tl.constexpr, HAS_D: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ATOMIC_Y: tl.constexpr,
        STORE_HS: tl.constexpr, HAS_H0: tl.constexpr, CARRY_ONLY: tl.constexpr,
        DOT_PREC: tl.constexpr):
    pid_d = tl.program_id(0)
    pid_bg = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bg // G).to(tl.int64)
    g = pid_bg % G
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < DC
    offs_n = tl.arange(0, NP)
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    ch = g * DC + offs_d  # row of A / D / bias
    A = tl.load(
        a_ptr + ch[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.)
    Dv = tl.zeros((BD, ), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(dd_ptr + ch, mask=mask_d, other=0.)
    bias = tl.zeros((BD, ), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=mask_d, other=0.)
    if PROJ:
        offs_r = tl.arange(0, RP)
        w_tile = tl.load(
            w_ptr + g * sw_g + offs_d[:, None] * sw_c + offs_r[None, :] * sw_r,
            mask=mask_d[:, None] & (offs_r < R)[None, :],
            other=0.)
    else:
        w_tile = tl.zeros((BD, RP), dtype=tl.float32)
    u_base = u_ptr + b * su_b + g * su_g
    d_base = d_ptr + b * sd_b + g * sd_g
    x_base = x_ptr + b * sx_b + g * sx_g
    bm_base = x_ptr + b * sb_b + g * sb_g
    y_base = y_ptr + b * sy_b + g * sy_g
    # (batch·G, DC, ·, NP) float32 side buffers, contiguous
    row = pid_bg.to(tl.int64) * DC + offs_d
    S = tl.num_programs(2)
    if HAS_H0:
        h = tl.load(
            h0_ptr + (row[:, None] * S + pid_s) * NP + offs_n[None, :],
            mask=mask_dn,
            other=0.)
    else:
        h = tl.zeros((BD, NP), dtype=tl.float32)
    dsum = tl.zeros((BD, ), dtype=tl.float32)
    idx = tl.arange(0, T)
    c0 = pid_s * CPS
    c1 = tl.minimum(c0 + CPS, NCH)
    for c in range(c0, c1):
        if STORE_HS:
            tl.store(
                hs_ptr + (row[:, None] * NCH + c) * NP + offs_n[None, :],
                h,
                mask=mask_dn)
        t = c * T + idx
        mask_t = t < L
        hh, ww = _positions(t, g, H, W, L, DIRECTIONAL)
        u, z, delta, Bt, Ct, dtr = _chunk_inputs(
            u_base, d_base, x_base, bm_base, bm_base, w_tile, bias, offs_d,
            mask_d, t, mask_t, hh, ww, W, R, su_c, su_h, su_w, sd_c, sd_h,
            sd_w, sx_j, sx_p, sb_n, sb_p, b_off, c_off, N, NP, RP, PROJ,
            HAS_BIAS, SOFTPLUS, DOT_PREC)
        a = tl.exp(delta[:, None, :] * A[:, :, None])
        bb = (delta * u)[:, None, :] * Bt[None, :, :]
        bb = tl.where(idx[None, None, :] == 0, bb + a * h[:, :, None], bb)
        _, hseq = tl.associative_scan((a, bb), 2, _first_order)
        h = tl.sum(tl.where(idx[None, None, :] == T - 1, hseq, 0.), 2)
        if CARRY_ONLY:
            dsum += tl.sum(delta, 1)
        else:
            y = tl.sum(hseq * Ct[None, :, :], 1)
            if HAS_D:
                y += Dv[:, None] * u
            ptrs = (
                y_base + offs_d[:, None] * sy_c +
                (hh * sy_h + ww * sy_w)[None, :])
            mask = mask_d[:, None] & mask_t[None, :]
            if ATOMIC_Y:
                tl.atomic_add(ptrs, y, mask=mask, sem='relaxed')
            else:
                tl.store(ptrs, y.to(y_ptr.dtype.element_ty), mask=mask)
    if CARRY_ONLY:
        tl.store(
            hend_ptr + (row[:, None] * S + pid_s) * NP + offs_n[None, :],
            h,
            mask=mask_dn)
        tl.store(dsum_ptr + row * S + pid_s, dsum, mask=mask_d)


@triton.jit(do_not_specialize=_RUNTIME)
def scan_bwd_kernel(
        u_ptr, d_ptr, x_ptr, w_ptr, a_ptr, dd_ptr, bias_ptr, gy_ptr, hs_ptr,
        r0_ptr, rend_ptr, dsum_ptr, du_ptr, dz_ptr, dbc_ptr, dw_ptr, da_ptr,
        dD_ptr, dbias_ptr, DC, H, W, L, R, NCH, CPS, su_b, su_g, su_c, su_h,
        su_w, sd_b, sd_g, sd_c, sd_h, sd_w, sx_b, sx_g, sx_j, sx_p, sy_b, sy_g,
        sy_c, sy_h, sy_w, sw_g, sw_c, sw_r, b_off, c_off, sb_b, sb_g, sb_n,
        sb_p, G: tl.constexpr, N: tl.constexpr, NP: tl.constexpr,
        RP: tl.constexpr, BD: tl.constexpr, T: tl.constexpr,
        DIRECTIONAL: tl.constexpr, PROJ: tl.constexpr, HAS_D: tl.constexpr,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, ATOMIC_U: tl.constexpr,
        HAS_R0: tl.constexpr, CARRY_ONLY: tl.constexpr,
        DOT_PREC: tl.constexpr, DZ_OUT: tl.constexpr):
    """Backward of :func:`scan_fwd_kernel`.

    ``gy`` has y's strides (sy_*), ``du``/``dz`` u's (su_*)/delta's (sd_*),
    ``dbc`` (float32 grads of B/C or of the whole x_dbl) the B/C strides and
    ``dx`` the dt-rank strides. Reductions over channels go through atomics.

    With ``PROJ`` the gradients of the dt-rank vectors and of ``W_dt`` are
    two small GEMMs per chunk inside the kernel, unless ``DZ_OUT``: then dz
    is stored (sd_* strides, per direction) and the caller does both GEMMs
    over the whole map; the kernel keeps no dot products of the backward
    (fewer registers: see tools/benchmark/kernel_resources.py).
    """
    pid_d = tl.program_id(0)
    pid_bg = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = (pid_bg // G).to(tl.int64)
    g = pid_bg % G
    offs_d = pid_d * BD + tl.arange(0, BD)
    mask_d = offs_d < DC
    offs_n = tl.arange(0, NP)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    ch = g * DC + offs_d
    A = tl.load(
        a_ptr + ch[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.)
    Dv = tl.zeros((BD, ), dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(dd_ptr + ch, mask=mask_d, other=0.)
    bias = tl.zeros((BD, ), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=mask_d, other=0.)
    offs_r = tl.arange(0, RP)
    mask_r = offs_r < R
    if PROJ:
        w_tile = tl.load(
            w_ptr + g * sw_g + offs_d[:, None] * sw_c + offs_r[None, :] * sw_r,
            mask=mask_d[:, None] & mask_r[None, :],
            other=0.)
    else:
        w_tile = tl.zeros((BD, RP), dtype=tl.float32)
    u_base = u_ptr + b * su_b + g * su_g
    d_base = d_ptr + b * sd_b + g * sd_g
    x_base = x_ptr + b * sx_b + g * sx_g
    bm_base = x_ptr + b * sb_b + g * sb_g
    gy_base = gy_ptr + b * sy_b + g * sy_g
    row = pid_bg.to(tl.int64) * DC + offs_d
    S = tl.num_programs(2)
    if HAS_R0:
        rc = tl.load(
            r0_ptr + (row[:, None] * S + pid_s) * NP + offs_n[None, :],
            mask=mask_dn,
            other=0.)
    else:
        rc = tl.zeros((BD, NP), dtype=tl.float32)
    dsum = tl.zeros((BD, ), dtype=tl.float32)
    dA = tl.zeros((BD, NP), dtype=tl.float32)
    dD = tl.zeros((BD, ), dtype=tl.float32)
    dbias = tl.zeros((BD, ), dtype=tl.float32)
    dW = tl.zeros((BD, RP), dtype=tl.float32)
    idx = tl.arange(0, T)
    c0 = pid_s * CPS
    c1 = tl.minimum(c0 + CPS, NCH)
    for ci in range(c0, c1):
        c = c1 - 1 - (ci - c0)
        t = c * T + idx
        mask_t = t < L
        mask = mask_d[:, None] & mask_t[None, :]
        hh, ww = _positions(t, g, H, W, L, DIRECTIONAL)
        u, z, delta, Bt, Ct, dtr = _chunk_inputs(
            u_base, d_base, x_base, bm_base, bm_base, w_tile, bias, offs_d,
            mask_d, t, mask_t, hh, ww, W, R, su_c, su_h, su_w, sd_c, sd_h,
            sd_w, sx_j, sx_p, sb_n, sb_p, b_off, c_off, N, NP, RP, PROJ,
            HAS_BIAS, SOFTPLUS, DOT_PREC)
        gy = tl.load(
            gy_base + offs_d[:, None] * sy_c +
            (hh * sy_h + ww * sy_w)[None, :],
            mask=mask,
            other=0.).to(tl.float32)
        a = tl.exp(delta[:, None, :] * A[:, :, None])
        cc = Ct[None, :, :] * gy[:, None, :]
        cc = tl.where(idx[None, None, :] == T - 1, cc + rc[:, :, None], cc)
        e, _, _ = tl.associative_scan(
            (cc, tl.full(a.shape, 1., tl.float32), a),
            2,
            _reverse_first_order,
            reverse=True)
        rc = tl.sum(tl.where(idx[None, None, :] == 0, a * e, 0.), 2)
        if CARRY_ONLY:
            dsum += tl.sum(delta, 1)
        else:
            p = hh * W + ww
            h0 = tl.load(
                hs_ptr + (row[:, None] * NCH + c) * NP + offs_n[None, :],
                mask=mask_dn,
                other=0.)
            du_ = delta * u
            bb = du_[:, None, :] * Bt[None, :, :]
            bbm = tl.where(idx[None, None, :] == 0, bb + a * h0[:, :, None],
                           bb)
            _, hseq = tl.associative_scan((a, bbm), 2, _first_order)
            # a_t·h_{t-1} without a shifted copy of h; at the chunk start it
            # is a_0·h0 itself (exactly 0 for a sequence that starts from
            # zero, whatever rounding the compiled scan does).
            ah = tl.where(idx[None, None, :] == 0, a * h0[:, :, None],
                          hseq - bb)
            dA += tl.sum(e * ah * delta[:, None, :], 2)
            ddelta = tl.sum(
                e * (ah * A[:, :, None] + u[:, None, :] * Bt[None, :, :]), 1)
            du = delta * tl.sum(e * Bt[None, :, :], 1)
            if HAS_D:
                du += Dv[:, None] * gy
                dD += tl.sum(gy * u, 1)
            mask_nt = mask_n[:, None] & mask_t[None, :]
            dbc_base = dbc_ptr + b * sb_b + g * sb_g
            tl.atomic_add(
                dbc_base + b_off + offs_n[:, None] * sb_n + p[None, :] * sb_p,
                tl.sum(e * du_[:, None, :], 0),
                mask=mask_nt,
                sem='relaxed')
            tl.atomic_add(
                dbc_base + c_off + offs_n[:, None] * sb_n + p[None, :] * sb_p,
                tl.sum(hseq * gy[:, None, :], 0),
                mask=mask_nt,
                sem='relaxed')
            if ATOMIC_U:
                tl.atomic_add(
                    du_ptr + b * su_b + g * su_g + offs_d[:, None] * su_c +
                    (hh * su_h + ww * su_w)[None, :],
                    du,
                    mask=mask,
                    sem='relaxed')
            else:
                tl.store(
                    du_ptr + b * su_b + g * su_g + offs_d[:, None] * su_c +
                    (hh * su_h + ww * su_w)[None, :],
                    du,
                    mask=mask)
            if SOFTPLUS:
                dz = ddelta * tl.sigmoid(z)
            else:
                dz = ddelta
            dz = tl.where(mask, dz, 0.)
            if HAS_BIAS:
                dbias += tl.sum(dz, 1)
            if PROJ and not DZ_OUT:
                # d dt_r = W_dtᵀ dz (summed over this channel block) and
                # dW_dt += dz dt_rᵀ, both as small GEMMs.
                ddtr = tl.dot(tl.trans(w_tile), dz, input_precision=DOT_PREC)
                tl.atomic_add(
                    dbc_ptr + b * sx_b + g * sx_g + offs_r[:, None] * sx_j +
                    p[None, :] * sx_p,
                    ddtr,
                    mask=mask_r[:, None] & mask_t[None, :],
                    sem='relaxed')
                dW += tl.dot(
                    dz, tl.trans(dtr.to(tl.float32)), input_precision=DOT_PREC)
            else:
                tl.store(
                    dz_ptr + b * sd_b + g * sd_g + offs_d[:, None] * sd_c +
                    (hh * sd_h + ww * sd_w)[None, :],
                    dz,
                    mask=mask)
    if CARRY_ONLY:
        tl.store(
            rend_ptr + (row[:, None] * S + pid_s) * NP + offs_n[None, :],
            rc,
            mask=mask_dn)
        tl.store(dsum_ptr + row * S + pid_s, dsum, mask=mask_d)
    else:
        tl.atomic_add(
            da_ptr + ch[:, None] * N + offs_n[None, :],
            dA,
            mask=mask_dn,
            sem='relaxed')
        if HAS_D:
            tl.atomic_add(dD_ptr + ch, dD, mask=mask_d, sem='relaxed')
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + ch, dbias, mask=mask_d, sem='relaxed')
        if PROJ and not DZ_OUT:
            tl.atomic_add(
                dw_ptr + g * sw_g + offs_d[:, None] * sw_c +
                offs_r[None, :] * sw_r,
                dW,
                mask=mask_d[:, None] & mask_r[None, :],
                sem='relaxed')
