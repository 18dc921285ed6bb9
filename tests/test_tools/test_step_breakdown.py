"""mmvmamba.analysis.bench.step_breakdown: wall, host (less its waits for
the device) and device time per step, as bench_models.py --breakdown
reports them."""
import time

import pytest
import torch

from mmvmamba.analysis.bench import (breakdown_from_events, host_busy_us,
                                     step_breakdown)


def test_host_time_excludes_waits_inside_the_steps():
    steps = [(0., 10.), (20., 30.)]
    # a wait inside the first step, one across the end of the second, one
    # outside every step
    waits = [(5., 8.), (25., 40.), (12., 18.)]
    assert host_busy_us(steps, waits) == pytest.approx(10. - 3. + 10. - 5.)
    assert host_busy_us(steps, []) == pytest.approx(20.)


def test_step_breakdown_on_a_cpu_step():
    lin = torch.nn.Linear(64, 64)
    x = torch.randn(32, 64)

    def step():
        lin(x).sum().backward()
        time.sleep(0.004)  # host work, not a wait for a device

    res = step_breakdown(step, 3, device='cpu')
    assert set(res) == {'wall', 'host', 'device'}
    assert res['device'] == 0.
    assert res['wall'] >= 4.
    # nothing to wait for: the host is busy for (nearly) the whole step
    assert 0.8 * res['wall'] <= res['host'] <= res['wall'] * 1.01


def test_breakdown_counts_the_steps_annotation_once():
    """The profiler reports the steps' record_function twice, on the host
    and as a GPU user annotation over the step's kernels: host time counts
    the host range, device time only the kernels."""
    from types import SimpleNamespace as E

    def ev(name, dev, t0, t1):
        return E(name=name, device_type=f'DeviceType.{dev}',
                 time_range=E(start=t0, end=t1))

    events = [
        ev('mmvmamba_step', 'CPU', 0., 1000.),
        ev('cudaDeviceSynchronize', 'CPU', 600., 1000.),
        ev('mmvmamba_step', 'CUDA', 100., 1500.),  # annotation
        ev('kernel_a', 'CUDA', 100., 400.),
        ev('kernel_b', 'CUDA', 500., 1500.),
    ]
    res = breakdown_from_events(events, iters=1)
    assert res == {'host': pytest.approx(0.6), 'device': pytest.approx(1.3)}
