"""mmvmamba.analysis.bench.step_breakdown: wall, host (less its waits for
the device) and device time per step, as bench_models.py --breakdown
reports them."""
import time

import pytest
import torch

from mmvmamba.analysis.bench import host_busy_us, step_breakdown


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
