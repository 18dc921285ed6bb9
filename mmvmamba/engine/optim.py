"""An optimizer-wrapper constructor whose optimizer ``torch.compile`` can trace.

MMEngine's ``compile=True`` compiles the model's whole ``train_step``, the
optimizer's step included. With a ``paramwise_cfg`` (the recipes' "no decay
on norms") MMEngine's default constructor builds the optimizer through its
registry, which turns every parameter group into a ``ConfigDict``; Dynamo
cannot trace an optimizer step over dict subclasses (torch 2.14: the run
stops at the first iteration with ``InternalTorchDynamoError: AttributeError:
'UserDefinedDictVariable' object has no attribute 'items'`` in
``torch/optim/adam.py``). This constructor is MMEngine's default one, with
the groups handed to the optimizer as plain dicts (the same keys and
values; nothing else changes).

    optim_wrapper = dict(constructor='mmvmamba.OptimWrapperConstructor',
                         paramwise_cfg=...)
"""
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['OptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class OptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's :class:`DefaultOptimWrapperConstructor` with plain-dict
    parameter groups (traceable by ``torch.compile``)."""

    def __call__(self, model) -> OptimWrapper:
        wrapper = super().__call__(model)
        groups = wrapper.optimizer.param_groups
        # in place: the list object stays the one the wrapper and the
        # schedulers (built later) read
        groups[:] = [dict(g) for g in groups]
        return wrapper
