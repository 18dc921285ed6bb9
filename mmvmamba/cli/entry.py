"""What the command-line entry points (``tools/*.py``) share: the third-party
warnings they hide, and the thread count of the CPU runs.

Library code never changes warning filters; only entry points call
:func:`hide_third_party_warnings`, first thing, before the imports that warn.
"""
import os
import warnings

#: (message prefix, category) of warnings that third-party packages emit on
#: every start and that a user cannot act on
THIRD_PARTY_WARNINGS = (
    # mmengine.utils.package_utils imports pkg_resources (setuptools >= 81)
    ('pkg_resources is deprecated as an API', UserWarning), )


def hide_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` in this process."""
    for message, category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


def python_warnings_env() -> str:
    """:data:`THIRD_PARTY_WARNINGS` as a ``PYTHONWARNINGS`` value, for the
    processes an entry point starts (prepended to the caller's own)."""
    own = os.environ.get('PYTHONWARNINGS', '')
    ours = [f'ignore:{m}:{c.__name__}' for m, c in THIRD_PARTY_WARNINGS]
    return ','.join(ours + ([own] if own else []))


def cpu_threads() -> int:
    """The CPU cores this process may run on (its affinity mask), whatever
    the load average: a busy machine is still fastest with all of them."""
    return len(os.sched_getaffinity(0))
