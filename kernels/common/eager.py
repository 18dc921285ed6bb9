"""Eager calls of the project's custom ops without the custom-op dispatcher.

Each Triton op is a ``torch.library.custom_op`` with a fake implementation
and ``register_autograd``: that is what ``torch.compile``, fake tensors and
other tensor subclasses need. In plain eager mode the same dispatch costs
several times the Python of the launch itself (the dispatcher's schema
handling and the generated autograd wrapper; a VMamba-T training step makes
about a hundred such calls), so on plain tensors outside compilation the
op's own implementation runs under an ordinary ``autograd.Function`` built
from the same setup-context and backward functions: one code path, two
entrances. Without a gradient to compute (inference, frozen inputs) the
implementation runs alone.
"""
from typing import Callable, Sequence

import torch
from torch import Tensor


class _Ctx:
    """What ``register_autograd``'s setup_context and backward see."""


def eager_function(impl: Callable, setup_context: Callable,
                   backward: Callable, outputs: int) -> type:
    """An ``autograd.Function`` running ``impl`` (the custom op's Python
    implementation), saving with ``setup_context`` and differentiating with
    ``backward`` (the functions given to ``register_autograd``). It returns
    the first ``outputs`` of the implementation's outputs (a tuple); the
    others, auxiliary outputs of the custom op that only its backward reads,
    are saved by ``setup_context`` and get no gradient."""

    class EagerOp(torch.autograd.Function):

        @staticmethod
        def forward(ctx, *args):
            # an unused output gets None, not a materialised zero gradient
            ctx.set_materialize_grads(False)
            ctx.n_inputs = len(args)
            out = impl(*args)
            setup_context(ctx, args, out)
            # the auxiliary outputs (statistics, carries) stay intermediates
            # of this function: saved, never returned, so autograd neither
            # wraps them as outputs nor detaches them to save and unpack
            # (two dispatches per saved output, and the wrapping of each)
            ctx.n_aux = len(out) - outputs
            return tuple(out[:outputs])

        @staticmethod
        def backward(ctx, *grads):
            if all(g is None for g in grads):
                return (None, ) * ctx.n_inputs
            return tuple(backward(ctx, *grads, *(None, ) * ctx.n_aux))

    EagerOp.__name__ = EagerOp.__qualname__ = f'Eager_{impl.__name__}'
    EagerOp.impl = staticmethod(impl)
    return EagerOp


#: plain tensors: a model's weights are Parameters (a subclass that adds
#: nothing to dispatch)
_PLAIN = (Tensor, torch.nn.Parameter)


def _plain(args) -> bool:
    """Eager mode on plain tensors: not compiling, no tensor subclass, no
    fake-tensor or torch-function mode active."""
    if torch.compiler.is_compiling() or any(
            type(a) not in _PLAIN for a in args if isinstance(a, Tensor)):
        return False
    try:
        return (not torch._C._is_torch_function_mode_enabled()
                and torch._C._get_dispatch_mode(
                    torch._C._TorchDispatchModeKey.FAKE) is None)
    except AttributeError:  # another torch: take the op, always correct
        return False


def eager_call(fn: type, op: Callable, *args) -> Sequence[Tensor]:
    """``fn.apply(*args)`` on plain tensors in eager mode (the
    implementation itself when no gradient is wanted: no autograd node to
    build), else the custom op ``op`` (compilation, fake tensors,
    subclasses, dispatch modes)."""
    if not _plain(args):
        return op(*args)
    if torch.is_grad_enabled() and any(
            a.requires_grad for a in args if isinstance(a, Tensor)):
        return fn.apply(*args)
    return fn.impl(*args)


def impl_or_op(impl: Callable, op: Callable, *args):
    """A call without an autograd node of its own (a backward, or a
    forward without a gradient to compute): the implementation itself in
    eager mode on plain tensors, else the custom op."""
    return impl(*args) if _plain(args) else op(*args)


def cast_like(t: Tensor, ref: Tensor) -> Tensor:
    """``t.to(ref.dtype)`` without a dispatch when the dtypes agree (the
    backward wrappers' gradients are float32 for float32 weights)."""
    return t if t.dtype == ref.dtype else t.to(ref.dtype)
