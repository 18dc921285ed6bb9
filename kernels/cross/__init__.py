"""The cross scan and cross merge (spec §3.1): the four scan orders of an H×W
map and their adjoint.

- :mod:`.reference`: ``cross_scan_ref``, ``cross_merge_ref`` (PyTorch).
- :mod:`.kernels`: the Triton tile-copy kernel of both.
- :mod:`.op`: its launch, the custom ops ``mmvmamba::cross_scan`` /
  ``cross_merge`` and their autograd (each the other's backward).

Public entry points: :func:`mmvmamba.kernels.cross_scan`,
:func:`mmvmamba.kernels.cross_merge`.
"""
