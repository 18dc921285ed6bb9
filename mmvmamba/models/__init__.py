"""Model modules; importing this registers them in ``mmvmamba.registry.MODELS``."""
from .vmamba import ARCH_SETTINGS, FORWARD_TYPES, SS2D, VMamba, VSSBlock

__all__ = ['ARCH_SETTINGS', 'FORWARD_TYPES', 'SS2D', 'VMamba', 'VSSBlock']
