"""The LayerNorm op at VMamba-T's shapes: GPU time against its memory floor
and against PyTorch.

A VMamba-T AMP training step runs 48 LayerNorms (three per block) on the
float32 residual stream or scan output, each writing a 16-bit result for a
linear layer. Rows, per shape (batch 128, channels-last (B, H, W, C), float32
input, bf16 output, bf16 upstream gradient), the GPU time of one call: the
kernels' device time summed by the profiler over ``--iters`` calls (host time
excluded: ``analysis.bench.step_breakdown``'s device time; a CUDA-graph
replay of autograd.grad failed to capture here):

- ``ours``: ``mmvmamba.kernels.layer_norm`` (Triton forward keeping the
  16-bit x̂, Triton backward), for each ``--sub`` (row blocks per backward
  program);
- ``aten-bwd``: the same forward, the backward through PyTorch's
  ``native_layer_norm_backward`` fed with the statistics, the gradient and
  x̂ cast to float32 first (the op's backward before 2026-12-04);
- ``torch``: ``F.layer_norm`` then the cast to bf16 (a plain model).

The floors, at the card's copy rate: forward (inference, no gradient)
float32 x read and bf16 y written; forward + backward: the training forward
(x read, y and x̂ written), then x̂ and the gradient read and float32 dx
written.

    python tools/benchmark/bench_layernorm.py [--sub 1 2 4 8] [--json F]
"""
import argparse

import torch
import torch.nn.functional as F

from mmvmamba.analysis.bench import copy_rate, step_breakdown, write_json
from mmvmamba.kernels import layer_norm
from mmvmamba.kernels.norm import config as LNC
from mmvmamba.kernels.norm import op as LN

SHAPES = {
    'T-stage1': (128, 56, 56, 96),
    'T-stage2': (128, 28, 28, 192),
    'T-stage3': (128, 14, 14, 384),
    'T-stage4': (128, 7, 7, 768),
}


class _AtenBackward(torch.autograd.Function):
    """The former backward: PyTorch's LayerNorm backward kernels fed with
    the forward's statistics, after float32 casts of x̂ and dy."""

    @staticmethod
    def forward(ctx, x, w, b):
        y, stats, xhat = LN._ln_fwd_impl(x, w, b, 1e-6, torch.bfloat16, True)
        ctx.save_for_backward(xhat, w, b, stats[1])
        return y

    @staticmethod
    def backward(ctx, dy):
        xhat, w, b, rstd = ctx.saved_tensors
        stats = xhat.shape[:-1] + (1, )
        rstd = rstd.view(stats)
        x = xhat.float() / rstd
        dx, dw, db = torch.ops.aten.native_layer_norm_backward(
            dy.float(), x, [x.shape[-1]], torch.zeros_like(rstd), rstd,
            w.float(), b.float(), [True, True, True])
        return dx, dw, db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sub', type=int, nargs='+', default=[LNC.BWD_SUB])
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--json')
    args = parser.parse_args()
    rate = copy_rate()
    print(f'{torch.cuda.get_device_name()}  copy {rate:.0f} GB/s  '
          f'torch {torch.__version__}')
    print('shape      variant      fwd ms  f+b ms   floor f / f+b ms  '
          '× floor f / f+b  grad rel err')
    rows = []
    default_sub = LNC.BWD_SUB
    for name, shape in SHAPES.items():
        C = shape[-1]
        E = torch.Size(shape).numel()
        floor_f = E * 6 / rate / 1e6
        floor_fb = E * (8 + 8) / rate / 1e6
        x = torch.randn(shape, device='cuda').requires_grad_()
        w = (torch.randn(C, device='cuda') * 0.5 + 1).requires_grad_()
        b = torch.randn(C, device='cuda').requires_grad_()
        dy = torch.randn(shape, device='cuda', dtype=torch.bfloat16)
        ref_out = F.layer_norm(x.double(), (C, ), w.double(), b.double(),
                               1e-6)
        ref = torch.autograd.grad(ref_out, [x, w, b], dy.double())

        def ours():
            return layer_norm(x, w, b, 1e-6, torch.bfloat16, backend='triton')

        def torch_ln():
            return F.layer_norm(x, (C, ), w, b, 1e-6).to(torch.bfloat16)

        variants = [(f'ours sub={s}', ours, s) for s in args.sub]
        variants += [('aten-bwd', lambda: _AtenBackward.apply(x, w, b),
                      default_sub), ('torch', torch_ln, default_sub)]
        for label, fn, sub in variants:
            LNC.BWD_SUB = sub
            got = torch.autograd.grad(fn(), [x, w, b], dy)
            err = max((g.double() - r).abs().max().item() /
                      r.abs().max().item() for g, r in zip(got, ref))

            def fwd():
                with torch.no_grad():
                    fn()

            def fwd_bwd():
                torch.autograd.grad(fn(), [x, w, b], dy)

            for _ in range(3):  # compile, settle the allocator
                fwd(), fwd_bwd()
            f = step_breakdown(fwd, args.iters)['device']
            fb = step_breakdown(fwd_bwd, args.iters)['device']
            rows.append(
                dict(shape=name, variant=label, fwd_ms=f, fwd_bwd_ms=fb,
                     floor_fwd_ms=floor_f, floor_fwd_bwd_ms=floor_fb,
                     grad_rel_err=err))
            print(f'{name:10s} {label:12s} {f:6.3f}  {fb:6.3f}   '
                  f'{floor_f:.3f} / {floor_fb:.3f}      '
                  f'{f / floor_f:5.1f} / {fb / floor_fb:5.1f}   {err:.1e}')
        LNC.BWD_SUB = default_sub
    write_json(args.json, dict(copy_gb_s=rate, rows=rows))


if __name__ == '__main__':
    main()
