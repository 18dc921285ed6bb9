"""The README's main job (``make demo``).

Generates the built-in demo shapes set, trains Mask R-CNN + VMamba-T on it from
scratch (COCO box/mask mAP after each evaluation), evaluates the last checkpoint,
draws its predictions, and says where everything is.

The terminal shows progress: the environment, config and parameter-group
records that MMEngine prints at the start go to the log file only (MMEngine
writes it in full). PyTorch uses every core the process may run on
(``DEMO_THREADS=N`` overrides).

Options (for a quick look; ``make demo`` passes none): ``--epochs N`` trains N
epochs instead of the config's 8, ``--work-dir DIR`` writes elsewhere.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Iterable, Iterator, List, Optional

from mmvmamba.cli.entry import cpu_threads, python_warnings_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIG = osp.join('configs', 'demo', 'maskrcnn_vmamba_t_demo-shapes.py')
WORK_DIR = osp.join('work_dirs', 'maskrcnn_vmamba_t_demo-shapes')

#: MMEngine records that go to the log file only: the environment dump (a
#: record with an empty first line), the config, the hook table, one line
#: per parameter group of the optimizer, and MMEngine's deprecation notices
#: about the file backends mmdet's hooks use
FILE_ONLY = ('Config:', 'Hooks will be executed in the following order',
             'paramwise_options -- ', '"FileClient" will be deprecated',
             '"HardDiskBackend" is the alias of "LocalBackend"')
_RECORD = re.compile(r'\d\d/\d\d \d\d:\d\d:\d\d - mmengine - [A-Z]+ - (.*)')


def console_lines(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` (a tool's output) without the :data:`FILE_ONLY` records; a
    record runs from its header line to the next header."""
    hidden = False
    for line in lines:
        record = _RECORD.match(line)
        if record:
            message = record.group(1).strip()
            hidden = not message or message.startswith(FILE_ONLY)
        if not hidden:
            yield line


def latest(pattern: str) -> str:
    return max(glob.glob(pattern), key=osp.getmtime)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--epochs', type=int, help="train N epochs (default: the config's)")
    parser.add_argument(
        '--work-dir', default=WORK_DIR, help='default: %(default)s')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    work_dir = args.work_dir
    threads = int(os.environ.get('DEMO_THREADS') or cpu_threads())
    print(f'[mmvmamba] demo: {threads} PyTorch CPU thread(s) '
          '(DEMO_THREADS=N to change); the full log (environment, config, '
          f'parameter groups) goes to {work_dir}/<timestamp>/<timestamp>.log',
          flush=True)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        PYTHONWARNINGS=python_warnings_env(),
        PYTHONUNBUFFERED='1')
    start = time.time()

    def tool(*cmd: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, osp.join(ROOT, 'tools', cmd[0]), *cmd[1:]],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            errors='replace')
        for line in console_lines(proc.stdout):
            sys.stdout.write(line)
            sys.stdout.flush()
        if proc.wait():
            sys.exit(proc.returncode)

    epochs = ([f'train_cfg.max_epochs={args.epochs}']
              if args.epochs else [])
    tool('train.py', CONFIG, '--work-dir', work_dir,
         *(['--cfg-options', *epochs] if epochs else []))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    tool('test.py', CONFIG, ckpt, '--work-dir', osp.join(work_dir, 'test'),
         '--show-dir', 'predictions')

    train = latest(osp.join(work_dir, '20*', ''))
    test = latest(osp.join(work_dir, 'test', '20*', ''))
    stamp = osp.basename(osp.dirname(train))
    print(f'\n[mmvmamba] demo done in {time.time() - start:.0f} s; COCO mAP on '
          'the validation images:')
    with open(osp.join(train, 'vis_data', 'scalars.json')) as f:
        for record in map(json.loads, f):
            if 'coco/bbox_mAP' in record:  # one per evaluation, step = epoch
                print(f"  after epoch {record['step']}: box "
                      f"{record['coco/bbox_mAP']:.4f}  mask "
                      f"{record['coco/segm_mAP']:.4f}")
    metrics = osp.join(test, osp.basename(osp.dirname(test)) + '.json')
    print(f'  metrics:  {metrics} (final), '
          f"{osp.join(train, 'vis_data', 'scalars.json')} (training curves)")
    print(f"  pictures: {osp.join(test, 'predictions')}/ (final), "
          f"{osp.join(train, 'vis_data', 'vis_image')}/ (during training)")
    print(f"  log:      {osp.join(train, stamp + '.log')} (all of it)")


if __name__ == '__main__':
    main()
