"""mmvmamba.LoggerHook: one writer for the test metrics json."""
import json
from types import SimpleNamespace
from unittest import mock

import pytest
from mmengine.config import Config
from mmengine.hooks import LoggerHook as MMEngineLoggerHook

from mmvmamba.engine import hooks
from mmvmamba.engine.hooks import LoggerHook, use_main_process_logger

METRICS = {'coco/bbox_mAP': 0.5, 'coco/segm_mAP': 0.25}


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_from_every_scope(scope):
    registry = __import__(f'{scope}.registry', fromlist=['HOOKS']).HOOKS
    hook = registry.build(dict(type='mmvmamba.LoggerHook', interval=7))
    assert type(hook) is LoggerHook and hook.interval == 7


@pytest.mark.parametrize('given,expected', [
    ('LoggerHook', 'mmvmamba.LoggerHook'),
    ('mmengine.LoggerHook', 'mmvmamba.LoggerHook'),
    ('MyLoggerHook', 'MyLoggerHook'),
])
def test_config_swap_keeps_arguments(given, expected):
    cfg = Config(
        dict(default_hooks=dict(logger=dict(type=given, interval=50))))
    use_main_process_logger(cfg)
    assert cfg.default_hooks.logger.type == expected
    assert cfg.default_hooks.logger.interval == 50


def test_config_without_logger_is_left_alone():
    cfg = Config(dict(default_hooks=dict(timer=dict(type='IterTimerHook'))))
    use_main_process_logger(cfg)
    assert 'logger' not in cfg.default_hooks


def fake_runner(tmp_path, infos):
    processor = mock.Mock()
    processor.get_log_after_epoch.return_value = (dict(METRICS), 'metrics')
    return SimpleNamespace(
        log_processor=processor,
        test_dataloader=[0, 1, 2],
        log_dir=str(tmp_path),
        logger=SimpleNamespace(info=infos.append))


@pytest.mark.parametrize('main', [True, False])
def test_only_the_main_process_writes_the_metrics(tmp_path, main):
    hook = LoggerHook()
    hook.json_log_path = 'run.json'
    infos = []
    runner = fake_runner(tmp_path, infos)
    with mock.patch.object(hooks, 'is_main_process', return_value=main):
        hook.after_test_epoch(runner, dict(METRICS))
    assert infos == ['metrics']  # every rank logs the line
    out = tmp_path / 'run.json'
    if main:
        assert json.loads(out.read_text()) == METRICS
    else:
        assert not out.exists()
    assert issubclass(LoggerHook, MMEngineLoggerHook)
