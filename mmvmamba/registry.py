"""The ``mmvmamba`` child registries (models, hooks, optimizer-wrapper
constructors).

``dict(type='mmvmamba.VMamba')`` (or ``'mmvmamba.LoggerHook'``,
``'mmvmamba.CUDAGraphTrainHook'``, ``constructor=
'mmvmamba.OptimWrapperConstructor'``) resolves from any OpenMMLab scope (mmdet,
mmseg, mmpretrain): mmengine sees the ``mmvmamba.`` prefix, imports this
module and then the ``locations`` below, so no ``custom_imports`` is needed
and no downstream package is imported by us.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmvmamba',
    locations=['mmvmamba.models'])

HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmvmamba',
    locations=['mmvmamba.engine.hooks', 'mmvmamba.engine.graphed_train'])

OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmvmamba',
    locations=['mmvmamba.engine.optim'])
