"""bench_kernels.py with the SS2D pair kernels' configuration set to the
best of a sweep_scan.py JSON (lowest forward + backward summed over its
shapes): measure the sweep's winner before making it the default.

    python tools/benchmark/bench_best.py SWEEP.json [bench_kernels args]
"""
import collections
import importlib
import json
import runpy
import sys

KEYS = ('BD', 'warps', 'BDB', 'warpsB', 'T', 'per_sm')


def best(path: str) -> dict:
    rows = json.load(open(path))['rows']
    total = collections.defaultdict(float)
    for r in rows:
        total[tuple(r.get(k) for k in KEYS)] += r['fwd_bwd_ms']
    cfg = dict(zip(KEYS, min(total, key=total.get)))
    return {k: v for k, v in cfg.items() if v is not None}


if __name__ == '__main__':
    cfg = best(sys.argv[1])
    print('configuration', cfg, flush=True)
    importlib.import_module('mmvmamba.kernels.ss2d.config').TUNE.update(cfg)
    sys.argv = ['bench_kernels.py'] + sys.argv[2:]
    runpy.run_path('tools/benchmark/bench_kernels.py', run_name='__main__')
