"""The SS2D core (spec §3): cross scan, x and dt projections, the selective
scan of the four directions and the cross merge, fused.

- :mod:`.reference`: ``ss2d_core_ref`` (PyTorch, the specification).
- :mod:`.kernels`: the d_state-1 pair kernels (Triton; summaries, carry
  chain, rescan; deterministic).
- :mod:`.config`: which path runs a call, the pair kernels' tiles and
  programs, the padded x_dbl rows.
- :mod:`.pair`: the pair path's launches, GEMMs, custom ops and autograd.
- :mod:`.chunked`: the path on the chunked scan of :mod:`..scan` (d_state > 1,
  and batch > 2 below 784 pixels).
- :mod:`.op`: the entry point ``ss2d_core_triton`` (checks, x projection,
  dispatch).
- :mod:`.cpu` + ``cpu.cpp``: the compiled CPU scan.

Public entry point: :func:`mmvmamba.kernels.ss2d_core`.
"""
