"""VMamba refuses bad argument values at construction and bad inputs at the
forward's entry, naming the argument and what it accepts (issue 17.7)."""
import pytest
import torch

from mmvmamba.models import VMamba

TINY = dict(dims=8, depths=(1, 1, 1, 1), backend='torch')

BAD_ARGUMENTS = {
    'misspelt backend': (dict(backend='trition'),
                         "backend='trition' is not one of (None, 'torch', "
                         "'triton')"),
    'drop_path_rate above 1': (dict(drop_path_rate=1.5),
                               'drop_path_rate=1.5: expected a number in '
                               '[0, 1)'),
    'negative drop_path_rate': (dict(drop_path_rate=-0.1),
                                'drop_path_rate=-0.1'),
    'dims as a string': (dict(dims='96'), "dims='96': expected a positive "
                         'int'),
    'depths as a string': (dict(depths='2292'), "depths='2292': expected a "
                           'list of block counts'),
    'zero width': (dict(dims=[0, 8, 16, 32]), 'dims=[0, 8, 16, 32]'),
}


@pytest.mark.parametrize('case', sorted(BAD_ARGUMENTS))
def test_bad_arguments_are_named_at_construction(case):
    kwargs, message = BAD_ARGUMENTS[case]
    with pytest.raises(ValueError) as err:
        VMamba(**dict(TINY, **kwargs))
    assert message in str(err.value)


def test_bad_inputs_are_named_at_the_forward_entry():
    model = VMamba(**TINY).eval()
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\) images, got shape '
                       r'\(3, 32, 32\) \(one image\? add the batch'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r'got shape \(1, 4, 32, 32\)'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match='floating-point images, got '
                       'torch.uint8'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match='got a list'):
        model([torch.randn(1, 3, 32, 32)])
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 8, 8), (2, 16, 4, 4),
                                              (2, 32, 2, 2), (2, 64, 1, 1)]
