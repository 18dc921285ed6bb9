"""Kernel variants chosen by environment variables (read once, at import)."""
import os
from typing import Sequence


def env_choice(name: str, choices: Sequence[str]) -> str:
    """The value of ``name`` in the environment, one of ``choices`` (the
    first is the default); anything else raises, naming the choices."""
    value = os.environ.get(name, choices[0])
    if value not in choices:
        raise ValueError(f'{name}={value!r}: expected {choices[0]} (default)'
                         f' or {" or ".join(choices[1:])}')
    return value
