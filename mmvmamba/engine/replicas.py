"""Are the data-parallel replicas identical after training?

``tools/train.py --replica-digest DIR`` calls :func:`check_replicas` at the
end of training: every rank hashes its own model state (SHA-256 over names,
dtypes, shapes and raw bytes), writes ``DIR/rank<R>.json``, and the digests
of all ranks are gathered over the process group (so the check also works
across machines that share no file system). The command line compares the
files, and optionally a checkpoint, after the fact::

    python -m mmvmamba.engine.replicas work_dirs/x/replicas \\
        --checkpoint work_dirs/x/epoch_8.pth
"""
import argparse
import glob
import hashlib
import json
import os
import os.path as osp
import socket
import sys
from collections import Counter
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor


def state_digest(state: Mapping[str, Tensor]) -> str:
    """SHA-256 of a state dict: keys, dtypes, shapes and exact bytes.

    Two states have the same digest only if they are bit-identical; the
    order of the keys does not matter.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, Tensor):
            continue
        t = t.detach().to('cpu').contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / FSDP-like wrappers (as saved in checkpoints)."""
    while hasattr(model, 'module'):
        model = model.module
    return model


def check_replicas(model: torch.nn.Module,
                   out_dir: Optional[str] = None) -> List[str]:
    """Digest this rank's model state and gather every rank's digest.

    Args:
        model: the (possibly DDP-wrapped) model of this rank.
        out_dir: if given, write ``out_dir/rank<R>.json`` for this rank.

    Returns:
        The digests of all ranks, by rank (one entry without a process
        group). Collective: every rank must call it.
    """
    from mmengine.dist import all_gather_object, get_dist_info
    state = unwrap(model).state_dict()
    digest = state_digest(state)
    rank, world = get_dist_info()
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        record = dict(
            rank=rank,
            world_size=world,
            local_rank=int(os.environ.get('LOCAL_RANK', 0)),
            node_rank=int(os.environ.get('GROUP_RANK', 0)),
            host=socket.gethostname(),
            digest=digest,
            num_tensors=len(state),
            num_elements=sum(t.numel() for t in state.values()
                             if isinstance(t, Tensor)))
        with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(record, f, indent=1)
    return all_gather_object(digest)


def describe(digests: List[str]) -> Tuple[bool, str]:
    """(all equal, a one-line summary naming the odd ranks if any)."""
    if len(set(digests)) == 1:
        return True, (f'replicas identical across {len(digests)} rank(s): '
                      f'sha256 {digests[0][:16]}')
    counts = Counter(digests)
    common = counts.most_common(1)[0][0]
    odd = [r for r, d in enumerate(digests) if d != common]
    return False, (f'replicas differ: rank(s) {odd} hold other parameters '
                   f'than the {counts[common]} rank(s) with sha256 '
                   f'{common[:16]}')


def read_digest_dir(path: str) -> Dict[int, dict]:
    """The ``rank<R>.json`` records of a ``--replica-digest`` folder."""
    records = {}
    for name in glob.glob(osp.join(path, 'rank*.json')):
        with open(name) as f:
            rec = json.load(f)
        records[int(rec['rank'])] = rec
    return records


def compare_dir(path: str,
                checkpoint: Optional[str] = None) -> Tuple[bool, str]:
    """Check a digest folder: every rank present, all equal, and (given a
    checkpoint) equal to the checkpoint's ``state_dict``."""
    records = read_digest_dir(path)
    if not records:
        return False, (f'no rank*.json in {path!r}: train with '
                       f'tools/train.py --replica-digest {path}')
    world = {r['world_size'] for r in records.values()}
    if len(world) != 1:
        return False, f'mixed runs in {path!r} (world sizes {sorted(world)})'
    world_size = world.pop()
    missing = sorted(set(range(world_size)) - set(records))
    if missing:
        return False, (f'ranks {missing} of {world_size} wrote no digest '
                       f'into {path!r} (other machines: copy their files '
                       'here, or read the gathered result in the log)')
    ok, msg = describe([records[r]['digest'] for r in range(world_size)])
    if ok and checkpoint:
        from mmvmamba.checkpoint import safe_load
        ckpt = safe_load(checkpoint)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt,
                                                           dict) else None
        if not isinstance(state, dict):
            return False, f'{checkpoint!r} holds no state_dict'
        if state_digest(state) != records[0]['digest']:
            return False, (f'{msg}, but the checkpoint {checkpoint!r} '
                           'differs from them (not the end of this run?)')
        msg += f'; equal to {osp.basename(checkpoint)}'
    return ok, msg


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Compare the per-rank digests written by '
        'tools/train.py --replica-digest DIR (exit status 1 if they differ)')
    parser.add_argument('dir', help='the --replica-digest folder')
    parser.add_argument(
        '--checkpoint', help='also compare with this checkpoint (rank 0)')
    args = parser.parse_args(argv)
    ok, msg = compare_dir(args.dir, args.checkpoint)
    print(f'[mmvmamba] {msg}' if ok else f'[mmvmamba] error: {msg}')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
