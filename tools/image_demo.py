"""Run a VMamba detector, segmentor or classifier on your own images and
draw its predictions (mmdet ``DetInferencer``, mmseg ``MMSegInferencer``,
mmpretrain ``ImageClassificationInferencer``).

Examples::

    # after `make demo`: its detector on the demo images (or your own)
    python tools/image_demo.py data/vmamba_demo/val \\
        configs/demo/maskrcnn_vmamba_t_demo-shapes.py --out-dir outputs
    # official COCO / ADE20K / ImageNet weights (model-index.yml), by model
    # name or config; --weights overrides
    python tools/image_demo.py photo.jpg maskrcnn_vmamba_t_coco
    python tools/image_demo.py photos/ \\
        configs/upernet_vmamba_t_ade20k-512x512-160k.py --weights seg.pth

Writes OUT_DIR/vis/<image> (drawn predictions) and OUT_DIR/preds/<image>.json
(.png label maps for segmentation), only once every image succeeded. Without
--weights: the config's load_from, else the last checkpoint tools/train.py
wrote for the config (work_dirs/<config name>/), else its official weights.
"""
import argparse
import os.path as osp
import sys
from typing import Any, Dict, List, Optional

from mmvmamba.cli.entry import hide_third_party_warnings  # isort:skip

hide_third_party_warnings()  # before the imports that warn
from mmengine.config import DictAction  # noqa: E402

from mmvmamba.apis import run_image_demo  # noqa: E402
from mmvmamba.cli.preflight import PreflightError  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Predict on an image or a folder of images and draw the '
        'predictions (detection, segmentation or classification config)')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument(
        'config',
        help='a config file, or a model name of model-index.yml (e.g. '
        'maskrcnn_vmamba_t_coco)')
    parser.add_argument(
        '--weights',
        help='checkpoint (path or URL): from tools/train.py or an official '
        'VMamba file; default: see above')
    parser.add_argument(
        '--device',
        help='cpu, cuda or cuda:N (default: cuda if available, else cpu)')
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='output folder (default: %(default)s)')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection: draw boxes above this score (default: %(default)s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def summary(scope: str, image: str, pred: Any, meta: Dict,
            score_thr: float) -> str:
    """One line per image: what was found."""
    name = osp.basename(image)
    classes = list(meta.get('classes', None) or [])

    def cls(i: int) -> str:
        return classes[i] if 0 <= i < len(classes) else str(i)

    if scope == 'mmdet':
        kept = [(cls(int(label)), score)
                for label, score in zip(pred['labels'], pred['scores'])
                if score >= score_thr]
        shown = ', '.join(f'{c} {s:.2f}' for c, s in kept[:5])
        more = ', ...' if len(kept) > 5 else ''
        plural = '' if len(kept) == 1 else 's'
        return (f'{name}: {len(kept)} object{plural} with score >= '
                f'{score_thr}'
                + (f' ({shown}{more})' if kept else ''))
    if scope == 'mmseg':
        import numpy as np
        labels, counts = np.unique(np.asarray(pred), return_counts=True)
        order = np.argsort(-counts)
        parts = [
            f'{cls(int(labels[i]))} {100 * counts[i] / counts.sum():.0f}%'
            for i in order[:5]
        ]
        return f'{name}: ' + ', '.join(parts)
    return (f"{name}: {pred.get('pred_class', pred['pred_label'])} "
            f"({pred['pred_score']:.2f})")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    try:
        result = run_image_demo(
            args.inputs,
            args.config,
            weights=args.weights,
            device=args.device,
            out_dir=args.out_dir,
            cfg_options=args.cfg_options,
            score_thr=args.score_thr)
    except PreflightError as e:
        print(f'[mmvmamba] error: {e}', file=sys.stderr)
        sys.exit(2)
    model = result['inferencer'].model
    meta = getattr(model, 'dataset_meta', None) or getattr(
        model, '_dataset_meta', None) or {}
    print(f"[mmvmamba] {result['config']} with {result['weights']} "
          f"({result['weights_source']})")
    for image, pred in zip(result['images'], result['predictions']):
        print('  ' + summary(result['scope'], image, pred, meta,
                             args.score_thr))
    out = result['out_dir']
    print(f'[mmvmamba] {len(result["images"])} image(s): drawn predictions '
          f"in {osp.join(out, 'vis')}/, predictions in "
          f"{osp.join(out, 'preds')}/")
    return result


if __name__ == '__main__':
    main()
