"""The S6 selective scan with the official semantics (spec §3.4).

- :mod:`.reference`: ``selective_scan_ref`` (PyTorch).
- :mod:`.op`: the custom ops ``mmvmamba::selective_scan_fwd`` / ``_bwd`` and
  their autograd, running the chunked scan of :mod:`..scan`.

Public entry point: :func:`mmvmamba.kernels.selective_scan`.
"""
