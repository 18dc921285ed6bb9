"""The chunked first-order scan: the engine under the selective scan op
(:mod:`..selective`, plain layout) and the SS2D core's chunked path
(:mod:`..ss2d.chunked`, directional layout, Δ recomputed from the dt rank).

- :mod:`.reference`: ``linear_scan_ref``, h_t = a_t·h_{t-1} + b_t in
  PyTorch (vectorised, differentiable).
- :mod:`.kernels`: the Triton forward and backward scan kernels.
- :mod:`.config`: their launch configuration (channel blocks, chunk length,
  warps, programs per launch; ``TUNE`` for sweeps).
- :mod:`.launch`: the layout of a launch's tensors and the two-pass launches
  over time splits (``scan_forward``, ``scan_backward``).
"""
