"""The README's commands work as written.

Every command of the README (``bash`` blocks and inline ``python ...``,
``bash ...``, ``make ...`` spans) is parsed: its entry point must exist, every
``--option`` it shows must be one its parser defines, every config file it
names must exist, and a test (or ``make demo``) must run that entry point —
:data:`EXERCISED` says which one, and is checked against the test's text.
"""
import os.path as osp
import re
import shlex

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: entry point -> (test file that runs it, text that shows it runs it there)
EXERCISED = {
    'make demo': ('Makefile', 'tools/demo.py'),  # and make demo runs it
    'make test': ('Makefile', '-m pytest tests'),
    'make install': ('Makefile', 'tools/install.sh'),
    'make lint': ('Makefile', '-m flake8'),
    'tools/demo.py': ('tests/test_tools/test_demo.py', "'demo.py'"),
    'tools/train.py': ('tests/test_tools/test_train_test.py', "'train.py'"),
    'tools/test.py': ('tests/test_tools/test_train_test.py', "'test.py'"),
    'tools/dist_train.sh': ('tests/test_tools/test_dist.py', 'dist_train.sh'),
    'tools/dist_test.sh': ('tests/test_tools/test_dist.py', 'dist_test.sh'),
    'tools/image_demo.py': ('tests/test_tools/test_image_demo.py', 'TOOL'),
    'tools/convert_checkpoint.py':
    ('tests/test_models/test_checkpoint.py', "'convert_checkpoint.py'"),
    'tools/model_zoo.py':
    ('tests/test_configs/test_model_zoo.py', 'model_zoo.py'),
    'tools/analysis/flops.py':
    ('tests/test_configs/test_model_zoo.py', "import_module('flops')"),
    'tools/analysis/erf.py':
    ('tests/test_tools/test_analysis_erf.py', "_load_tool('erf')"),
    'tools/analysis/scaling.py':
    ('tests/test_tools/test_analysis_scaling.py', "'scaling.py'"),
    'tools/export.py': ('tests/test_tools/test_export.py', "'export.py'"),
    'mmvmamba/datasets/demo_shapes.py':
    ('tests/test_tools/test_demo.py', 'demo_shapes.py'),
    '-m mmvmamba.engine.replicas':
    ('tests/test_engine/test_replicas.py', 'mmvmamba.engine.replicas'),
    'tools/benchmark/gpu_multi.sh':
    ('tests/test_tools/test_dist_gpu_scripts.py', 'gpu_multi.sh'),
    'tools/benchmark/cpu_speed.py':
    ('tests/test_tools/test_cpu_speed.py', "'tools/benchmark/cpu_speed.py'"),
    'tools/benchmark/gpu_speed.sh':
    ('tests/test_tools/test_dist_gpu_scripts.py', 'gpu_speed.sh'),
    'mim search': ('tests/test_tools/test_mim.py', "'search'"),
    'mim train': ('tests/test_tools/test_mim.py', "'train'"),
    'mim test': ('tests/test_tools/test_mim.py', "'test'"),
}
#: where the options of a shell launcher are parsed
LAUNCHES = {
    'tools/dist_train.sh': 'tools/train.py',
    'tools/dist_test.sh': 'tools/test.py',
    'mim train': 'tools/train.py',
    'mim test': 'tools/test.py',
}
#: options mim itself takes (the others go to the tool it runs)
MIM_OPTIONS = ('--checkpoint', '--gpus', '--launcher', '--yes')
_ENV = r'(?:[A-Z_]+=(?:"[^"]*"|\S+)\s+)*'
_INLINE = re.compile(
    r'`(' + _ENV + r'(?:\.venv/bin/)?(?:python|bash|make|mim)\s[^`]*)`')


def readme_commands(text: str):
    """The commands of the README, one string each (comments removed,
    continuation lines joined)."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        block = block.replace('\\\n', ' ')
        for line in block.splitlines():
            line = line.split(' #')[0].strip()
            if line and not line.startswith('#'):
                commands.append(line)
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    commands += [' '.join(c.split()) for c in _INLINE.findall(prose)]
    return commands


def entry_point(command: str):
    """(entry point, arguments) of one README command."""
    words = shlex.split(command.replace('[', ' ').replace(']', ' '))
    while words and re.match(r'[A-Z_]+=', words[0]):
        words.pop(0)  # NNODES=2 ...
    prog, args = words[0], words[1:]
    if prog in ('make', 'mim'):
        return f'{prog} {args[0]}', args[1:]
    if prog == 'source':
        return None, []
    assert prog in ('python', '.venv/bin/python', 'bash'), command
    if args[0] == '-m':
        return f'-m {args[1]}', args[2:]
    return args[0], args[1:]


def _read(path: str) -> str:
    with open(osp.join(ROOT, path)) as f:
        return f.read()


README = _read('README.md')
COMMANDS = readme_commands(README)


def test_commands_are_found():
    # the parser sees the commands a newcomer runs first
    assert COMMANDS[:2] == ['make demo', 'make test']
    assert {entry_point(c)[0] for c in COMMANDS} >= {
        'make demo', 'make test', 'tools/train.py', 'tools/test.py',
        'tools/image_demo.py', 'tools/dist_train.sh'
    }


def test_environment_is_named_before_the_first_python_command():
    first = min(i for i, c in enumerate(COMMANDS)
                if entry_point(c)[0] and not c.startswith('make'))
    assert 'source .venv/bin/activate' in COMMANDS[:first + 1]
    assert '.venv/bin/python tools/' in README


@pytest.mark.parametrize('command', COMMANDS)
def test_readme_command(command):
    entry, args = entry_point(command)
    if entry is None:
        return
    assert entry in EXERCISED, (
        f'README command {command!r}: no test runs {entry!r}; add one and '
        'name it in EXERCISED')
    test_file, marker = EXERCISED[entry]
    assert marker in _read(test_file), (
        f'{test_file} does not run {entry} (no {marker!r} in it)')
    if entry.startswith('make '):
        assert re.search(rf'^{entry[5:]}:', _read('Makefile'), re.M)
        return
    if entry.startswith('-m '):
        path = entry[3:].replace('.', '/') + '.py'
    elif entry == 'mim search':
        return  # reads model-index.yml (tests/test_configs/test_model_zoo.py)
    elif entry.startswith('mim '):
        path = LAUNCHES[entry]
    else:
        path = entry
    assert osp.isfile(osp.join(ROOT, path)), f'{path} does not exist'
    parser_src = _read(LAUNCHES.get(entry, path))
    for arg in args:
        option = re.match(r'(--[a-z][\w-]*)', arg)
        if option and not (entry.startswith('mim ')
                           and option.group(1) in MIM_OPTIONS):
            assert f"'{option.group(1)}'" in parser_src, (
                f'README: {command!r}: {LAUNCHES.get(entry, path)} has no '
                f'option {option.group(1)}')
        elif re.match(r'configs/.*\.py$', arg):
            assert osp.isfile(osp.join(ROOT, arg)), f'{arg} does not exist'
