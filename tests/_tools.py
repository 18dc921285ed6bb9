"""Helpers of the tests that run the scripts under ``tools/``."""
import importlib.util
import os.path as osp
import subprocess

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(*path: str):
    """The script ``ROOT/<path>`` imported as a module (``main`` not run)."""
    spec = importlib.util.spec_from_file_location(
        '_tool_' + osp.splitext(path[-1])[0], osp.join(ROOT, *path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(cmd, cwd, env, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``cmd`` with stderr folded into stdout, as text."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
