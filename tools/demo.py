"""The README's main job (``make demo``).

Generates the built-in demo shapes set, trains Mask R-CNN + VMamba-T on it from
scratch (COCO box/mask mAP after each evaluation), evaluates the last checkpoint,
draws its predictions, and says where everything is.

PyTorch gets the CPU cores that are free now (``DEMO_THREADS=N`` overrides): a
multi-threaded step that shares its cores with another busy process waits on
descheduled threads and runs up to 10x slower than a one-thread step.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join('configs', 'demo', 'maskrcnn_vmamba_t_demo-shapes.py')
WORK_DIR = osp.join('work_dirs', 'maskrcnn_vmamba_t_demo-shapes')


def free_threads() -> int:
    cores = len(os.sched_getaffinity(0))
    return max(1, cores - round(os.getloadavg()[0]))


def latest(pattern: str) -> str:
    return max(glob.glob(pattern), key=osp.getmtime)


def main() -> None:
    threads = int(os.environ.get('DEMO_THREADS') or free_threads())
    print(f'[mmvmamba] demo: {threads} PyTorch CPU thread(s) '
          '(DEMO_THREADS=N to change)')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.time()

    def tool(*args: str) -> None:
        subprocess.run([sys.executable, osp.join(ROOT, 'tools', args[0]),
                        *args[1:]], env=env, check=True)

    try:
        tool('train.py', CONFIG, '--work-dir', WORK_DIR)
        with open(osp.join(WORK_DIR, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        tool('test.py', CONFIG, ckpt, '--work-dir',
             osp.join(WORK_DIR, 'test'), '--show-dir', 'predictions')
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)

    train = latest(osp.join(WORK_DIR, '20*', ''))
    test = latest(osp.join(WORK_DIR, 'test', '20*', ''))
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


if __name__ == '__main__':
    main()
