"""mmvmamba.kernels: cross scan, selective scan and the SS2D core."""
