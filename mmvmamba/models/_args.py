"""Checks of VMamba's argument values and of its input, with messages that
name the argument and what it accepts (issue 17: a misspelt ``backend`` was
only caught in the first forward, ``drop_path_rate=1.5`` failed inside torch
during training, ``dims='96'`` was read as ``['9', '6']`` and a 3-D input
failed in a ``permute``)."""
from numbers import Integral, Real
from typing import Any, Dict, Optional

from torch import Tensor, nn

#: SS2D core backends (None = Triton on CUDA, torch elsewhere)
BACKENDS = (None, 'torch', 'triton')


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def check_values(cfg: Dict[str, Any], backend: Optional[str]) -> None:
    """Raise ``ValueError`` naming the argument for a value VMamba cannot
    build with (``cfg``: the preset with the explicit arguments over it)."""
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r} is not one of {BACKENDS} '
                         "(None picks 'triton' for CUDA inputs and 'torch' "
                         'elsewhere)')
    dims, depths = cfg.get('dims'), cfg.get('depths')
    if not (_is_int(dims) and dims > 0) and not (
            isinstance(dims, (list, tuple))
            and all(_is_int(d) and d > 0 for d in dims)):
        raise ValueError(
            f'dims={dims!r}: expected a positive int (the width of stage 0, '
            'doubled per stage, e.g. dims=96) or a list of positive ints, '
            'one per stage (e.g. dims=[96, 192, 384, 768])')
    if not (isinstance(depths, (list, tuple)) and depths
            and all(_is_int(d) and d >= 0 for d in depths)):
        raise ValueError(
            f'depths={depths!r}: expected a list of block counts (ints >= '
            '0), one per stage, e.g. depths=[2, 2, 9, 2]')
    rate = cfg.get('drop_path_rate')
    if not (isinstance(rate, Real) and not isinstance(rate, bool)
            and 0 <= rate < 1):
        raise ValueError(
            f'drop_path_rate={rate!r}: expected a number in [0, 1) (the '
            'stochastic-depth rate of the last block; the presets use '
            '0.1 to 0.6)')


def check_input(x: Any, patch_embed: nn.Module) -> None:
    """Raise ``ValueError`` unless ``x`` is a (B, C, H, W) floating tensor
    with the channels the stem takes."""
    if not isinstance(x, Tensor):
        raise TypeError(f'VMamba takes a (B, C, H, W) tensor, got a '
                        f'{type(x).__name__}')
    conv = next(m for m in patch_embed.modules() if isinstance(m, nn.Conv2d))
    if x.dim() != 4 or x.shape[1] != conv.in_channels:
        hint = (' (one image? add the batch dimension: x[None])'
                if x.dim() == 3 else '')
        raise ValueError(
            f'VMamba takes (B, {conv.in_channels}, H, W) images, got shape '
            f'{tuple(x.shape)}{hint}')
    if not x.is_floating_point():
        raise ValueError(f'VMamba takes floating-point images, got {x.dtype} '
                         '(convert with x.float() after normalising)')
