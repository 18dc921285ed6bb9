"""The model zoo: ``model-index.yml`` and the metafiles it imports.

The files follow OpenMMLab's model-index format (what ``mim`` and the
``modelindex`` package read): ``model-index.yml`` at the repository root
imports one ``metafile.yml`` per recipe, whose ``Models`` give a ``Name``, the
``Config`` (relative to the repository root), ``Metadata`` (FLOPs,
Parameters, Training Data, ...), paper ``Results`` and official ``Weights``.

They are read with the ``modelindex`` package (OpenMMLab's reader, what
``mim`` uses), which also merges each model's collection into it.
"""
import os.path as osp
from typing import Dict, List, Optional

INDEX_FILE = 'model-index.yml'
#: repository root of a source checkout (where model-index.yml lives)
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: OpenMMLab task names of the metafiles, by config ``default_scope``
TASKS_OF_SCOPE = {
    'mmdet': ('Object Detection', 'Instance Segmentation'),
    'mmseg': ('Semantic Segmentation', ),
    'mmpretrain': ('Image Classification', ),
}


class ModelZooError(RuntimeError):
    """model-index.yml or a metafile is missing or malformed."""


def load_model_zoo(root: str = REPO_ROOT) -> List[Dict]:
    """All models of ``root/model-index.yml``, in file order.

    Each is a metafile's ``Models`` entry as a dict (``Name``,
    ``In Collection``, ``Config``, ``Weights``, ``Results``, ``Metadata``
    with its collection's merged in, model values winning) and two extra
    keys: ``metafile`` (path relative to ``root``) and ``config_path``
    (absolute path of ``Config``).
    """
    from modelindex.load_model_index import load
    path = osp.join(root, INDEX_FILE)
    if not osp.isfile(path):
        raise ModelZooError(
            f'{path!r} does not exist; the model zoo is read from a source '
            'checkout of mmvmamba (model-index.yml at its root)')
    try:
        index = load(path)
    except Exception as e:  # modelindex raises plain ValueErrors and more
        raise ModelZooError(f'cannot read {path!r}: {e}') from e
    models = []
    for model in index.models:
        full = model.full_model  # collection fields merged in
        models.append(
            dict(
                Name=full.name,
                **{'In Collection': model.in_collection},
                Config=full.config,
                Weights=full.weights,
                Metadata=dict(full.metadata.data) if full.metadata else {},
                Results=[
                    dict(Task=r.task, Dataset=r.dataset, Metrics=r.metrics)
                    for r in full.results
                ],
                metafile=osp.relpath(model.filepath, root),
                config_path=osp.join(root, full.config or '')))
    return models


def find_model(name_or_config: str,
               root: str = REPO_ROOT) -> Optional[Dict]:
    """The entry whose ``Name`` is ``name_or_config`` or whose ``Config``
    is that file; None if the model zoo lists neither."""
    try:
        models = load_model_zoo(root)
    except ModelZooError:
        return None
    path = osp.realpath(name_or_config) if osp.isfile(name_or_config) \
        else None
    for model in models:
        if model.get('Name') == name_or_config or (
                path and osp.realpath(model['config_path']) == path):
            return model
    return None


def _fmt_metrics(model: Dict) -> str:
    parts = []
    for result in model.get('Results', []):
        for key, value in result.get('Metrics', {}).items():
            if key.endswith(('AP50', 'AP75')):
                continue  # the table keeps the headline numbers
            parts.append(f'{key} {value}')
    return ', '.join(parts)


def markdown_table(models: List[Dict]) -> str:
    """The README's model-zoo table (Markdown) for ``models``."""
    lines = [
        '| model (config) | backbone | dataset | paper results | GFLOPs | '
        'params (M) | official weights |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for m in models:
        meta = m['Metadata']
        datasets = sorted({r['Dataset'] for r in m.get('Results', [])})
        weights = m.get('Weights')
        lines.append(
            f"| [`{m['Name']}`]({m['Config']}) | {meta.get('Backbone', '–')} "
            f"| {', '.join(datasets)} | {_fmt_metrics(m)} "
            f"| {meta['FLOPs'] / 1e9:.1f} | {meta['Parameters'] / 1e6:.1f} "
            f"| {f'[ckpt]({weights})' if weights else '–'} |")
    return '\n'.join(lines) + '\n'
