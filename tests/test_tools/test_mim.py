"""OpenMMLab's ``mim`` on mmvmamba: a built package carries
``mmvmamba/.mim`` (configs, tools, model-index.yml), where ``mim search``,
``mim train`` and ``mim test`` find them."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from mmvmamba.apis.model_zoo import load_model_zoo

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SOURCES = ('setup.py', 'setup.cfg', 'README.md', 'model-index.yml',
           'mmvmamba', 'kernels', 'configs', 'tools')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel ``pip install .`` builds, from a copy of the sources."""
    src = tmp_path_factory.mktemp('src')
    for name in SOURCES:
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(
                path,
                src / name,
                ignore=shutil.ignore_patterns('__pycache__', '.mim'))
        else:
            shutil.copy(path, src / name)
    subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(src / 'dist'),
        str(src)
    ],
                   check=True,
                   capture_output=True)
    (path, ) = (src / 'dist').glob('mmvmamba-*.whl')
    return str(path)


def test_wheel_carries_the_mim_files(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        index = yaml.safe_load(z.read('mmvmamba/.mim/model-index.yml'))
        configs = set()
        for metafile in index['Import']:
            meta = yaml.safe_load(z.read(f'mmvmamba/.mim/{metafile}'))
            configs |= {m['Config'] for m in meta['Models']}
    assert {'mmvmamba/.mim/tools/train.py', 'mmvmamba/.mim/tools/test.py',
            'mmvmamba/.mim/tools/dist_train.sh'} <= names
    # every config of the model index, and the demo, at the path mim reads
    assert configs == {m['Config'] for m in load_model_zoo(ROOT)}
    for config in configs | {'configs/demo/maskrcnn_vmamba_t_demo-shapes.py'}:
        assert f'mmvmamba/.mim/{config}' in names
    assert not [n for n in names if '__pycache__' in n]


def test_mim_search_train_test(wheel, tmp_path):
    pytest.importorskip(
        'mim',
        reason='openmim is not installed (pip install openmim; its '
        'dependency openxlab pins old setuptools/requests, so install.sh '
        'leaves it out)')
    target = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
        '--target',
        str(target), wheel
    ],
                   check=True,
                   capture_output=True)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target)] + sys.path),
        OMP_NUM_THREADS='1')

    def mim(*args):
        return subprocess.run([sys.executable, '-m', 'mim', *args],
                              cwd=tmp_path,
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=600)

    search = mim('search', 'mmvmamba')
    out = search.stdout + search.stderr[-2000:]
    assert 'config id: maskrcnn_vmamba_t_coco' in out
    assert 'config id: vmamba_b_in1k_official-eval' in out
    # train and test run the packaged tools on the packaged configs: the
    # demo config trains 1 epoch on 2 images, then tests that checkpoint
    cfg = 'configs/demo/maskrcnn_vmamba_t_demo-shapes.py'
    small = [
        '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.dataset.indices=2',
        'val_dataloader.dataset.indices=1',
        'test_dataloader.dataset.indices=1',
        'model.backbone.backend=torch'  # no CPU-kernel build in a new place
    ]
    run = mim('train', 'mmvmamba', cfg, '-y', '--work-dir', 'wd', *small)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert str(target / 'mmvmamba' / '.mim' / 'tools' / 'train.py') in (
        run.stdout)
    assert osp.isfile(tmp_path / 'wd' / 'epoch_1.pth')
    run = mim('test', 'mmvmamba', cfg, '-y', '--checkpoint', 'wd/epoch_1.pth',
              '--work-dir', 'wd/test', *small)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'coco/bbox_mAP' in run.stdout
