"""Checkpoints: one pipeline from an untrusted file to a checked model.

* :mod:`.unpickle` — :func:`safe_load`, the project's one loader
  (PyTorch's weights-only unpickler plus inert, checked stand-ins for the
  foreign objects of official VMamba and MMEngine files);
* :mod:`.files` — local paths, downloads into the torch hub cache, writes
  that replace their target only when complete (:func:`save_atomic`);
* :mod:`.convert` — conversion between the backbone, mmpretrain and
  official layouts (:func:`split_weights`, :func:`to_layout`);
* :mod:`.load` — the checked load: :func:`compare` (missing / unexpected /
  mis-shaped keys), :func:`arch_hint` and :func:`preset_of` (what a state
  dict implies), :func:`check_weights` (NaN/Inf, tensors without data),
  :func:`load_pretrained`;
* :mod:`.schemes` — every MMEngine ``CheckpointLoader`` scheme routed to
  :func:`safe_load`, and :func:`prepare` (hand a checked checkpoint to a
  Runner or an inferencer);
* :mod:`.errors` — :class:`CheckpointError` and its kinds; bounded
  formatting of file content.
"""
from .errors import (CheckpointContentError, CheckpointDownloadError,
                     CheckpointError, CheckpointFormatError,
                     CheckpointMismatchError, CheckpointNotFoundError,
                     CheckpointWriteError, NonFiniteWeightsError,
                     UnsafeCheckpointError, bounded_repr, fmt_keys)
from .files import (cached_download, missing_file_message, same_file,
                    save_atomic, wait_for_file)
from .convert import (LAYOUTS, StateDict, convert_legacy_keys,
                      extract_state_dict, is_official, official_to_backbone,
                      official_to_mmpretrain, split_weights, strip_prefix,
                      to_backbone_state_dict, to_layout)
from .load import (Comparison, arch_hint, check_state_dict, check_weights,
                   compare, infer_arch, load_pretrained,
                   load_state_dict_checked, preset_of, pretrained_state_dict)
from .schemes import allow_mmengine_checkpoints, prepare, release
from .unpickle import PickledObject, safe_load

__all__ = [
    'CheckpointContentError', 'CheckpointDownloadError', 'CheckpointError',
    'CheckpointFormatError', 'CheckpointMismatchError',
    'CheckpointNotFoundError', 'CheckpointWriteError', 'Comparison', 'LAYOUTS',
    'NonFiniteWeightsError', 'PickledObject', 'StateDict',
    'UnsafeCheckpointError', 'allow_mmengine_checkpoints', 'arch_hint',
    'bounded_repr', 'cached_download', 'check_state_dict', 'check_weights',
    'compare', 'pretrained_state_dict',
    'convert_legacy_keys', 'extract_state_dict', 'fmt_keys', 'infer_arch',
    'is_official', 'load_pretrained', 'load_state_dict_checked',
    'missing_file_message', 'official_to_backbone', 'official_to_mmpretrain',
    'prepare', 'preset_of', 'release', 'safe_load', 'same_file', 'save_atomic',
    'split_weights', 'strip_prefix', 'to_backbone_state_dict', 'to_layout',
    'wait_for_file'
]
