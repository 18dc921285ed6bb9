"""Effective receptive field (ERF) maps, as in the VMamba paper (spec §6).

For each image, the gradient of ``sum(relu(f[:, :, h//2, w//2]))`` — the centre
of the last stage's feature map ``f`` — with respect to the input is taken,
clamped at zero and summed over batch and RGB channels; the maps are averaged
over images. The picture shows ``(map ** 0.2) / max`` (RdYlGn heat-map), and
:func:`mass_area_fraction` gives the share of the input area that holds a given
share of the gradient mass: small for a local ERF, large for a global one.
"""
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'list_images', 'load_images',
    'synthetic_images', 'erf_map', 'mass_area_fraction',
    'square_area_fraction', 'erf_summary', 'plot_erfs'
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def list_images(folder: str) -> List[str]:
    """Image files under ``folder`` (recursive), sorted."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist; '
                                'pass --images DIR with .jpg/.png files')
    files = sorted(
        osp.join(root, f) for root, _, names in os.walk(folder) for f in names
        if f.lower().endswith(IMAGE_EXTS))
    if not files:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTS)}) under '
                                f'{folder!r}')
    return files


def _normalise(x: Tensor) -> Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def load_images(folder: str, size: int, num: int) -> Iterator[Tensor]:
    """Yield up to ``num`` images of ``folder`` as (1, 3, size, size) tensors.

    Bicubic resize of the short side to ``size``, centre crop, ImageNet
    normalisation (the official ERF pre-processing).
    """
    from PIL import Image
    from torchvision.transforms import functional as TF
    for path in list_images(folder)[:num]:
        with Image.open(path) as im:
            im = im.convert('RGB')
            im = TF.resize(
                im, size, interpolation=TF.InterpolationMode.BICUBIC)
            im = TF.center_crop(im, [size, size])
            yield _normalise(TF.to_tensor(im))[None]


def synthetic_images(size: int, num: int, seed: int = 0) -> Iterator[Tensor]:
    """Smooth random images (low-frequency noise), normalised like ImageNet."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(num):
        coarse = torch.rand(
            1, 3, max(2, size // 16), max(2, size // 16), generator=gen)
        img = nn.functional.interpolate(
            coarse, size=(size, size), mode='bicubic', align_corners=False)
        img = img + 0.05 * torch.randn(img.shape, generator=gen)
        yield _normalise(img.clamp(0, 1)[0])[None]


def erf_map(model: nn.Module,
            images: Iterator[Tensor],
            device: Optional[torch.device] = None) -> np.ndarray:
    """Mean input-gradient map of the centre of ``model``'s output map.

    Args:
        model: returns a (B, C, h, w) map (see ``LastStage``).
        images: (B, 3, H, W) tensors.
        device: where to run (default: the model's device).

    Returns:
        (H, W) float64 array, the average over images of
        ``relu(d sum(relu(f[:, :, h//2, w//2])) / d x)`` summed over B and RGB.
    """
    device = device or next(model.parameters()).device
    model.eval()
    total, count = None, 0
    for x in images:
        x = x.to(device).requires_grad_(True)
        feat = model(x)
        h, w = feat.shape[-2:]
        centre = torch.relu(feat[:, :, h // 2, w // 2]).sum()
        (grad, ) = torch.autograd.grad(centre, x)
        g = torch.relu(grad).sum((0, 1)).double().cpu().numpy()
        total = g if total is None else total + g
        count += 1
    if count == 0:
        raise ValueError('no images: the image folder or --num-images is '
                         'empty')
    return total / count


def mass_area_fraction(erf: np.ndarray, mass: float) -> float:
    """Smallest share of pixels that holds ``mass`` of the gradient total.

    Pixels are taken from the largest gradient down; 1/(H·W) for a single-pixel
    ERF, about ``mass`` for a uniform one.
    """
    if not 0 < mass <= 1:
        raise ValueError(f'mass must be in (0, 1], got {mass}')
    flat = np.sort(erf.ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return float('nan')
    k = int(np.searchsorted(np.cumsum(flat) / total, mass - 1e-12)) + 1
    return min(k, flat.size) / flat.size


def square_area_fraction(erf: np.ndarray, mass: float) -> float:
    """Area share of the smallest centred square holding ``mass`` (RepLKNet)."""
    H, W = erf.shape
    total = erf.sum()
    ch, cw = H // 2, W // 2
    for r in range(max(H, W)):
        win = erf[max(0, ch - r):ch + r + 1, max(0, cw - r):cw + r + 1]
        if win.sum() >= mass * total:
            return win.size / erf.size
    return 1.0


MASSES = (0.5, 0.9)


def erf_summary(erf: np.ndarray,
                masses: Sequence[float] = MASSES) -> Dict[str, float]:
    """{'area@50%': …, 'square@50%': …} for each mass share."""
    out = {}
    for m in masses:
        out[f'area@{m:.0%}'] = mass_area_fraction(erf, m)
        out[f'square@{m:.0%}'] = square_area_fraction(erf, m)
    return out


def plot_erfs(maps: Dict[str, np.ndarray],
              path: str,
              masses: Sequence[float] = (0.5, 0.9),
              cmap: str = 'RdYlGn') -> str:
    """Save the maps side by side as a PNG; each shows ``(map**0.2)/max``."""
    from matplotlib.figure import Figure
    n = len(maps)
    if n == 0:
        raise ValueError('no ERF maps to plot')
    fig = Figure(figsize=(4 * n + 0.8, 4.4), dpi=100)
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (label, erf) in zip(axes, maps.items()):
        vis = np.power(np.maximum(erf, 0), 0.2)
        vis = vis / vis.max() if vis.max() > 0 else vis
        im = ax.imshow(vis, cmap=cmap, vmin=0, vmax=1)
        stats = erf_summary(erf, masses)
        sub = ', '.join(f'{m:.0%}: {stats[f"area@{m:.0%}"]:.1%}'
                        for m in masses)
        ax.set_title(f'{label}\narea holding {sub}', fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches='tight')
    return path
