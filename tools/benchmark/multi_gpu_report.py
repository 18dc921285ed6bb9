"""The multi-GPU report of ``tools/benchmark/gpu_multi.sh``, from its
output folder: the demo trained and tested with ``dist_train.sh`` /
``dist_test.sh`` on N GPUs (mAP, replica equality, times), the two-"node"
run, and the Mask R-CNN training throughput of VMamba-T and Swin-T with the
scaling efficiency throughput_N / (N * throughput_1).

Reads (all optional; what is missing is shown as such)::

    OUT/demo_n<N>/train/         dist_train.sh work dir (scalars.json, ckpt)
    OUT/demo_n<N>/replicas/      tools/train.py --replica-digest output
    OUT/demo_n<N>/test/          dist_test.sh work dir (metrics json)
    OUT/demo_n<N>/*_seconds      wall times written by the script
    OUT/twonode/{train,replicas,train_seconds}
    OUT/speed_n<N>.json          tools/benchmark/maskrcnn_step_speed.py

and writes ``OUT/multi_gpu.md`` and ``OUT/multi_gpu.json``::

    python tools/benchmark/multi_gpu_report.py outputs/multi_gpu
"""
import argparse
import glob
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

from mmvmamba.engine.replicas import compare_dir

# The README: "mAP varies by about +-0.05 between runs" of the demo.
DEMO_NOISE = 0.05
MODELS = (('vmamba_t', 'VMamba-T'), ('swin_t', 'Swin-T (mmdet)'))


def _latest(pattern: str) -> Optional[str]:
    found = glob.glob(pattern)
    return max(found, key=osp.getmtime) if found else None


def _seconds(path: str) -> Optional[float]:
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None


def train_maps(work_dir: str) -> List[Dict[str, float]]:
    """Box/mask mAP of each evaluation during training (latest run)."""
    scalars = _latest(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    if scalars is None:
        return []
    evals = []
    with open(scalars) as f:
        for line in f:
            rec = json.loads(line)
            if 'coco/bbox_mAP' in rec:
                evals.append(
                    dict(
                        epoch=rec.get('step'),
                        bbox=rec['coco/bbox_mAP'],
                        segm=rec.get('coco/segm_mAP')))
    return evals


def test_metrics(work_dir: str) -> Optional[Dict[str, float]]:
    """The metrics that tools/test.py wrote (``<ts>/<ts>.json``), latest."""
    runs = [
        p for p in glob.glob(osp.join(work_dir, '*', '*.json')) if osp.basename(
            p)[:-5] == osp.basename(osp.dirname(p))
    ]
    if not runs:
        return None
    with open(max(runs, key=osp.getmtime)) as f:
        return json.load(f)


def last_checkpoint(work_dir: str) -> Optional[str]:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            path = f.read().strip()
    except OSError:
        return None
    # the file holds the path as the run saw it; it lies in work_dir
    local = osp.join(work_dir, osp.basename(path))
    return local if osp.isfile(local) else (path if osp.isfile(path) else None)


def run_result(run_dir: str) -> Dict:
    """One ``dist_train.sh`` (+ ``dist_test.sh``) run of the demo."""
    train = osp.join(run_dir, 'train')
    ckpt = last_checkpoint(train)
    res = dict(
        train_seconds=_seconds(osp.join(run_dir, 'train_seconds')),
        test_seconds=_seconds(osp.join(run_dir, 'test_seconds')),
        checkpoint=ckpt,
        evals=train_maps(train))
    rep = osp.join(run_dir, 'replicas')
    if osp.isdir(rep):
        ok, msg = compare_dir(rep, ckpt)
        res.update(replicas_identical=ok, replicas=msg)
    else:
        res.update(replicas_identical=None, replicas='not checked')
    metrics = test_metrics(osp.join(run_dir, 'test'))
    if metrics is not None:
        res.update(
            test_bbox=metrics.get('coco/bbox_mAP'),
            test_segm=metrics.get('coco/segm_mAP'))
    return res


def speed_result(path: str) -> Dict:
    with open(path) as f:
        data = json.load(f)
    return dict(
        world_size=data.get('world_size', 1),
        device=data.get('device_name'),
        args=data.get('args', {}),
        results=data['results'])


def _counts(out: str, pattern: str) -> List[int]:
    found = []
    for p in glob.glob(osp.join(out, pattern)):
        m = re.search(r'_n(\d+)(\.json)?$', p)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def collect(out: str) -> Dict:
    demo = {n: run_result(osp.join(out, f'demo_n{n}'))
            for n in _counts(out, 'demo_n*')}
    speed = {n: speed_result(osp.join(out, f'speed_n{n}.json'))
             for n in _counts(out, 'speed_n*.json')}
    twonode = (run_result(osp.join(out, 'twonode'))
               if osp.isdir(osp.join(out, 'twonode')) else None)
    return dict(demo=demo, speed=speed, twonode=twonode)


def efficiency(throughput: Dict[int, float]) -> Dict[int, Optional[float]]:
    """throughput_N / (N * throughput_1) for each N (None without N=1)."""
    base = throughput.get(1)
    return {
        n: (tp / (n * base) if base else None)
        for n, tp in throughput.items()
    }


def _f(value: Optional[float], fmt: str = '{:.3f}') -> str:
    return 'n/a' if value is None else fmt.format(value)


def _yes(flag: Optional[bool]) -> str:
    return {True: 'yes', False: '**no**', None: 'n/a'}[flag]


def markdown(res: Dict) -> str:
    lines = []
    demo = res['demo']
    if demo:
        base = demo.get(1, {}).get('test_bbox')
        lines += [
            '| GPUs | dist_train s | dist_test s | box mAP | mask mAP '
            f'| box mAP - 1 GPU (noise ±{DEMO_NOISE}) | replicas identical |',
            '| --- | --- | --- | --- | --- | --- | --- |'
        ]
        for n, r in sorted(demo.items()):
            box = r.get('test_bbox')
            delta = (box - base) if (box is not None
                                     and base is not None) else None
            note = ('' if delta is None or n == 1 else
                    (' (within)' if abs(delta) <= DEMO_NOISE + 1e-9 else
                     ' (outside)'))
            lines.append(
                f"| {n} | {_f(r['train_seconds'], '{:.0f}')} "
                f"| {_f(r['test_seconds'], '{:.0f}')} | {_f(box)} "
                f"| {_f(r.get('test_segm'))} "
                f"| {'' if n == 1 else _f(delta, '{:+.3f}')}{note} "
                f"| {_yes(r['replicas_identical'])} |")
        lines.append('')
    two = res['twonode']
    if two is not None:
        status = ('completed' if two['checkpoint'] is not None else
                  '**did not complete**')
        if two['train_seconds'] is not None:
            status += f" in {two['train_seconds']:.0f} s"
        lines.append(
            'Two torchrun "nodes" on this host (NNODES=2, NODE_RANK=0/1, one '
            f"GPU each): {status}; {two['replicas']}.")
        lines.append('')
    speed = res['speed']
    if speed:
        args = next(iter(speed.values()))['args']
        lines.append(
            'Mask R-CNN training throughput, images/s (batch '
            f"{args.get('batch')} per GPU, {args.get('height')}x"
            f"{args.get('width')}, AMP={args.get('amp')}, "
            f"{next(iter(speed.values()))['device']}; efficiency = "
            'throughput_N / (N x throughput_1)):')
        lines.append('')
        head = '| GPUs |'
        for _, label in MODELS:
            head += f' {label} img/s | efficiency |'
        lines += [head + ' VMamba-T / Swin-T |',
                  '| --- |' + ' --- | --- |' * len(MODELS) + ' --- |']
        eff = {
            key: efficiency({
                n: s['results'][key]['images_per_sec']
                for n, s in speed.items() if key in s['results']
            })
            for key, _ in MODELS
        }
        for n, s in sorted(speed.items()):
            row = f'| {n} |'
            for key, _ in MODELS:
                r = s['results'].get(key)
                row += (f" {r['images_per_sec']:.2f} | "
                        f"{_f(eff[key].get(n), '{:.0%}')} |"
                        if r else ' n/a | n/a |')
            ratio = None
            if all(k in s['results'] for k, _ in MODELS):
                ratio = (s['results']['vmamba_t']['images_per_sec'] /
                         s['results']['swin_t']['images_per_sec'])
            lines.append(row + f' {_f(ratio, "{:.2f}")} |')
        lines.append('')
    if not lines:
        return 'nothing to report\n'
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', help='the gpu_multi.sh output folder')
    args = parser.parse_args(argv)
    res = collect(args.out)
    text = markdown(res)
    print(text)
    with open(osp.join(args.out, 'multi_gpu.md'), 'w') as f:
        f.write(text)
    with open(osp.join(args.out, 'multi_gpu.json'), 'w') as f:
        json.dump(res, f, indent=1)
    bad = [n for n, r in res['demo'].items() if r['replicas_identical'] is
           False]
    if res['twonode'] and res['twonode']['replicas_identical'] is False:
        bad.append('twonode')
    if bad:
        print(f'[mmvmamba] error: replicas differ in runs {bad}',
              file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
