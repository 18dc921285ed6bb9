"""Hooks registered in the ``mmvmamba`` scope (``type='mmvmamba.<Name>'``)."""
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook as _MMEngineLoggerHook

from mmvmamba.registry import HOOKS


@HOOKS.register_module()
class LoggerHook(_MMEngineLoggerHook):
    """MMEngine's ``LoggerHook``, except that only the main process writes the
    test metrics to ``<work_dir>/<timestamp>/<timestamp>.json``.

    MMEngine 0.10 dumps that file from every rank of a distributed test at once;
    the ranks share the timestamp, so with 2+ processes the file can come out as
    two JSON objects run together (``json.load`` fails on it). Every rank still
    logs the metrics line, as before.
    """

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
            return
        _, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)


def use_main_process_logger(cfg) -> None:
    """Swap MMEngine's ``LoggerHook`` in ``cfg.default_hooks`` for
    :class:`LoggerHook` (same arguments); other logger hooks are left alone."""
    logger = cfg.get('default_hooks', {}).get('logger', None)
    stock = ('LoggerHook', 'mmengine.LoggerHook', _MMEngineLoggerHook)
    if logger is not None and logger.get('type') in stock:
        logger['type'] = 'mmvmamba.LoggerHook'
