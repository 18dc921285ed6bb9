"""Kernel tests: Triton kernels run under the interpreter on a CPU.

``TRITON_INTERPRET`` must be set before the kernels are decorated (first
import of ``mmvmamba.kernels.<kernel module>``), so it is set here at
collection. On a GPU machine the kernels run compiled instead.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ['TRITON_INTERPRET'] = '1'
