"""LayerNorm over the innermost dimension in memory, the output in its
consumer's dtype (the norm and the cast in one pass).

- :mod:`.reference`: ``layer_norm_ref`` (``F.layer_norm`` and the cast).
- :mod:`.kernels`: the Triton forward and backward kernels.
- :mod:`.config`: their launch configuration.
- :mod:`.op`: the custom ops ``mmvmamba::layer_norm_fwd`` / ``_bwd``, their
  autograd, and the inference call without one.

Public entry point: :func:`mmvmamba.kernels.layer_norm`.
"""
