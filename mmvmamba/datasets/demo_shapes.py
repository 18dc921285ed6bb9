"""A deterministic, download-free demo dataset: coloured shapes.

``generate_demo_shapes(root)`` writes, from a seed only::

    root/
      train/000000.jpg ...            images (RGB content, saved as JPEG)
      val/000000.jpg ...
      annotations/instances_train.json  COCO instance segmentation (RLE masks)
      annotations/instances_val.json
      seg/train/000000.png ...        semantic label maps: 0 = background,
      seg/val/000000.png ...          k = CLASSES[k - 1]
      meta.json                       generator arguments (used to skip re-runs)

Every image holds 1-3 large, bright shapes (circle, square, triangle; each
class with its own hue) at random size, rotation and position on a dark,
slightly noisy background; shapes overlap little and the stored masks are
the visible parts. The task is easy on purpose: Mask R-CNN with a VMamba-T
trained from scratch on a 2-core CPU learns it visibly within minutes.

The output appears atomically: it is written to a temporary sibling folder and
renamed into place, so an interrupted run leaves nothing half-written. A set
made by an older version or with other arguments is replaced (its
``meta.json`` marks it as generated); any other existing folder is an error.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'square', 'triangle')
# Mean hue (OpenCV scale 0-179) per class, jittered by +-8: colour is a
# strong cue, which lets a from-scratch model learn in a few hundred steps.
_CLASS_HUES = (0, 60, 115)
PALETTE = ((220, 40, 40), (40, 200, 60), (40, 80, 230))
DEFAULT_ROOT = 'data/vmamba_demo'
# the defaults match configs/demo/maskrcnn_vmamba_t_demo-shapes.py, so that
# other users of the default set (tools/analysis/erf.py) share its files
DEFAULT_NUM_TRAIN = 60
DEFAULT_NUM_VAL = 20
DEFAULT_IMG_SIZE = 160
_MAX_SHAPES = 3
_VERSION = 2


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark background: a grey level, a soft gradient and mild noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.full((size, size, 3), rng.uniform(20, 70), np.float32)
    gx, gy = rng.uniform(-20, 20, 2)
    img += (gx * (xx - 0.5) + gy * (yy - 0.5))[..., None]
    noise = rng.normal(0, 1, (size // 8, size // 8, 3)).astype(np.float32)
    img += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * 6
    return img


def _shape_mask(rng: np.random.Generator, label: int, size: int,
                extent: int) -> np.ndarray:
    """Binary mask (size, size) of one shape of class ``label``."""
    mask = np.zeros((size, size), np.uint8)
    cx = int(rng.integers(extent // 2, size - extent // 2))
    cy = int(rng.integers(extent // 2, size - extent // 2))
    r = extent / 2
    name = CLASSES[label]
    if name == 'circle':
        axes = (int(r), int(r * rng.uniform(0.85, 1.0)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360,
                    1, -1)
    else:
        n = 4 if name == 'square' else 3
        rot = rng.uniform(0, 2 * np.pi)
        ang = rot + np.arange(n) * 2 * np.pi / n
        pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _render_image(
        rng: np.random.Generator,
        size: int) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One RGB uint8 image and its visible instances [(label, mask)]."""
    img = _background(rng, size)
    shapes: List[Tuple[int, np.ndarray]] = []
    covered = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, _MAX_SHAPES + 1))):
        label = int(rng.integers(len(CLASSES)))
        extent = int(rng.uniform(0.3, 0.55) * size)
        # a few tries for a place that overlaps the others little
        for _ in range(10):
            mask = _shape_mask(rng, label, size, extent)
            if (mask & covered).sum() < 0.15 * mask.sum():
                break
        else:
            continue
        hue = (_CLASS_HUES[label] + rng.uniform(-8, 8)) % 180
        hsv = np.uint8([[[hue, rng.uniform(190, 255), rng.uniform(200, 255)]]])
        colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        img[mask] = colour
        # occlusion: earlier shapes keep only their visible pixels
        shapes = [(lbl, m & ~mask) for lbl, m in shapes]
        shapes.append((label, mask))
        covered |= mask
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    min_area = (0.1 * size)**2
    return img, [(lbl, m) for lbl, m in shapes if m.sum() >= min_area]


def _write_split(rng: np.random.Generator, out: str, split: str, num: int,
                 size: int, ann_id: int) -> Tuple[Dict, int]:
    """Write one split's images and label maps; returns its COCO dict."""
    os.makedirs(osp.join(out, split))
    os.makedirs(osp.join(out, 'seg', split))
    images, annotations = [], []
    for idx in range(num):
        img, instances = _render_image(rng, size)
        name = f'{idx:06d}'
        # JPEG keeps the set small; the encoder is deterministic
        cv2.imwrite(
            osp.join(out, split, name + '.jpg'),
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 92])
        semantic = np.zeros((size, size), np.uint8)
        for label, mask in instances:
            semantic[mask] = label + 1
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=idx,
                    category_id=label + 1,
                    segmentation=dict(
                        size=[size, size], counts=rle['counts'].decode()),
                    area=float(mask_utils.area(rle)),
                    bbox=[x, y, w, h],
                    iscrowd=0))
            ann_id += 1
        cv2.imwrite(osp.join(out, 'seg', split, name + '.png'), semantic)
        images.append(
            dict(id=idx, file_name=name + '.jpg', height=size, width=size))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=n, supercategory='shape')
            for i, n in enumerate(CLASSES)
        ])
    return coco, ann_id


def generate_demo_shapes(root: str = DEFAULT_ROOT,
                         num_train: int = DEFAULT_NUM_TRAIN,
                         num_val: int = DEFAULT_NUM_VAL,
                         img_size: int = DEFAULT_IMG_SIZE,
                         seed: int = 0,
                         force: bool = False,
                         quiet: bool = False) -> str:
    """Create the demo dataset under ``root`` (no-op if it already exists).

    Args:
        root: output folder.
        num_train / num_val: number of images per split.
        img_size: side of the square images in pixels.
        seed: generator seed; the same arguments give the same files.
        force: replace an existing folder even if this generator did not
            make it.
        quiet: do not print progress.

    Returns:
        ``root``.
    """
    if num_train < 1 or num_val < 1 or img_size < 32:
        raise ValueError('need num_train >= 1, num_val >= 1 and img_size >= '
                         f'32, got {num_train}, {num_val}, {img_size}')
    meta = dict(
        version=_VERSION,
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        classes=list(CLASSES))
    meta_file = osp.join(root, 'meta.json')
    if osp.exists(root):
        old: Optional[dict] = None
        if osp.isfile(meta_file):
            with open(meta_file) as f:
                old = json.load(f)
        if old == meta:
            return root
        # a set this generator made (older version or other arguments) is
        # ours to replace; anything else may be the user's data
        ours = isinstance(old, dict) and {'version', 'classes'} <= set(old)
        if not (ours or force):
            raise FileExistsError(
                f'{root!r} exists but was not made by this generator; '
                'delete it, choose another root, or pass force=True '
                '(--force) to replace it')
    if not quiet:
        print(f'[mmvmamba] generating the demo shapes dataset in {root!r} '
              f'({num_train} train + {num_val} val images, {img_size}px)')
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.demo_shapes-', dir=parent)
    try:
        rng = np.random.default_rng(seed)
        os.makedirs(osp.join(tmp, 'annotations'))
        ann_id = 1
        for split, num in (('train', num_train), ('val', num_val)):
            coco, ann_id = _write_split(rng, tmp, split, num, img_size, ann_id)
            with open(
                    osp.join(tmp, 'annotations', f'instances_{split}.json'),
                    'w') as f:
                json.dump(coco, f)
        with open(osp.join(tmp, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=1)
        if osp.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Generate the mmvmamba demo shapes dataset (COCO '
        'instance segmentation + semantic label maps).')
    parser.add_argument('--root', default=DEFAULT_ROOT)
    parser.add_argument('--num-train', type=int, default=DEFAULT_NUM_TRAIN)
    parser.add_argument('--num-val', type=int, default=DEFAULT_NUM_VAL)
    parser.add_argument('--img-size', type=int, default=DEFAULT_IMG_SIZE)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true')
    args = parser.parse_args(argv)
    root = generate_demo_shapes(args.root, args.num_train, args.num_val,
                                args.img_size, args.seed, args.force)
    print(f'[mmvmamba] demo dataset ready in {root!r}')


if __name__ == '__main__':
    main()
