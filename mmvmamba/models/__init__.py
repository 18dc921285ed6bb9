"""Model modules; importing this registers them in ``mmvmamba.registry.MODELS``."""
