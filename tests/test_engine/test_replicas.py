"""mmvmamba.engine.replicas: per-rank model digests and their comparison."""
import json
import multiprocessing
import os
import socket

import pytest
import torch
from torch import nn

import mmvmamba  # noqa: F401
from mmvmamba.engine.replicas import (check_replicas, compare_dir, describe,
                                      main, state_digest)


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_digest_is_exact_and_order_free():
    a, b = net().state_dict(), net().state_dict()
    assert state_digest(a) == state_digest(b)
    assert state_digest(dict(reversed(list(a.items())))) == state_digest(a)
    # one ulp in one weight changes it
    b['0.weight'][1, 2] = torch.nextafter(b['0.weight'][1, 2],
                                          torch.tensor(9.))
    assert state_digest(a) != state_digest(b)
    # so do a dtype, a name or a shape with the same bytes
    c = dict(a, **{'0.bias': a['0.bias'].view(torch.int32)})
    assert state_digest(c) != state_digest(a)
    d = {('x' + k if k == '0.bias' else k): v for k, v in a.items()}
    assert state_digest(d) != state_digest(a)
    e = dict(a, **{'0.weight': a['0.weight'].reshape(4, 3)})
    assert state_digest(e) != state_digest(a)
    # bf16 and 0-dim tensors hash too
    assert state_digest({'x': torch.ones((), dtype=torch.bfloat16)})


def test_describe_names_the_odd_rank():
    assert describe(['ab' * 32] * 3)[0]
    ok, msg = describe(['a' * 64, 'a' * 64, 'b' * 64])
    assert not ok and 'rank(s) [2]' in msg and 'the 2 rank(s)' in msg


def _worker(rank, port, out_dir, perturb, results):
    import torch.distributed as dist
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=2)
    model = net()
    if perturb and rank == 1:
        with torch.no_grad():
            model[0].bias[0] += 1e-6
    results[rank] = check_replicas(model, out_dir)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('perturb', [False, True])
def test_check_replicas_across_two_gloo_processes(tmp_path, perturb):
    # fork: the workers need not import this test module
    ctx = multiprocessing.get_context('fork')
    results = ctx.Manager().dict()
    port = _free_port()
    procs = [
        ctx.Process(
            target=_worker, args=(r, port, str(tmp_path), perturb, results))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    # every rank gathered both digests, in rank order
    assert results[0] == results[1] and len(results[0]) == 2
    ok, msg = describe(results[0])
    assert ok is not perturb
    files = sorted(os.listdir(tmp_path))
    assert files == ['rank0.json', 'rank1.json']
    recs = [json.loads((tmp_path / f).read_text()) for f in files]
    assert [r['digest'] for r in recs] == results[0]
    assert recs[1]['world_size'] == 2 and recs[1]['num_elements'] == 4 * 3 + \
        3 + 3 * 4 + 1  # Linear w+b, BN w+b+mean+var, num_batches_tracked
    assert compare_dir(str(tmp_path))[0] is not perturb


def _write(folder, rank, world, digest):
    folder.mkdir(exist_ok=True)
    (folder / f'rank{rank}.json').write_text(
        json.dumps(dict(rank=rank, world_size=world, digest=digest)))


def test_compare_dir_with_checkpoint_and_missing_ranks(tmp_path, capsys):
    model = net()
    digest = state_digest(model.state_dict())
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    rep = tmp_path / 'rep'
    _write(rep, 0, 2, digest)
    ok, msg = compare_dir(str(rep))
    assert not ok and 'ranks [1] of 2 wrote no digest' in msg
    _write(rep, 1, 2, digest)
    ok, msg = compare_dir(str(rep), str(ckpt))
    assert ok and 'equal to epoch_1.pth' in msg
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict=net(seed=1).state_dict()), other)
    ok, msg = compare_dir(str(rep), str(other))
    assert not ok and 'checkpoint' in msg and 'differs' in msg
    ok, msg = compare_dir(str(tmp_path / 'nothing'))
    assert not ok and '--replica-digest' in msg

    with pytest.raises(SystemExit) as e:
        main([str(rep), '--checkpoint', str(ckpt)])
    assert e.value.code == 0
    assert 'replicas identical across 2 rank(s)' in capsys.readouterr().out
    _write(rep, 1, 2, 'f' * 64)
    with pytest.raises(SystemExit) as e:
        main([str(rep)])
    assert e.value.code == 1
    assert 'error: replicas differ: rank(s) [1]' in capsys.readouterr().out


def test_check_replicas_without_a_process_group(tmp_path):
    model = net()
    wrapped = nn.Module()
    wrapped.module = model  # as DDP holds it
    assert check_replicas(wrapped, str(tmp_path / 'r')) == [
        state_digest(model.state_dict())
    ]
    rec = json.loads((tmp_path / 'r' / 'rank0.json').read_text())
    assert (rec['rank'], rec['world_size']) == (0, 1)
    assert compare_dir(str(tmp_path / 'r'))[0]
