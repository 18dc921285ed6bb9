"""What the command-line entry points (``tools/*.py``) share: the third-party
warnings they hide, and the thread count of the CPU runs.

Library code never changes warning filters; only entry points call
:func:`hide_third_party_warnings`, first thing, before the imports that warn.
"""
import logging
import os
import warnings

#: (message prefix, category) of warnings that third-party packages emit on
#: every start and that a user cannot act on
THIRD_PARTY_WARNINGS = (
    # mmengine.utils.package_utils imports pkg_resources (setuptools >= 81)
    ('pkg_resources is deprecated as an API', UserWarning), )


#: (logger, message prefix) of log records third-party packages emit that a
#: user cannot act on
THIRD_PARTY_LOG_RECORDS = (
    # importing torch.utils.cpp_extension (the CPU scan's build) on a machine
    # with a CUDA toolkit but no GPU; nothing here builds CUDA code
    ('torch.utils.cpp_extension', 'No CUDA runtime is found'), )


class _DropPrefixes(logging.Filter):

    def __init__(self, prefixes) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def hide_third_party_warnings() -> None:
    """Ignore :data:`THIRD_PARTY_WARNINGS` and
    :data:`THIRD_PARTY_LOG_RECORDS` in this process."""
    for message, category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)
    for name, prefix in THIRD_PARTY_LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) and prefix in f.prefixes
                   for f in logger.filters):
            logger.addFilter(_DropPrefixes([prefix]))


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
