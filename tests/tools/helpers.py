"""Running the tools: as subprocesses (what a user sees) and in-process (their parsers)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOOLS = sorted(f for f in os.listdir(os.path.join(ROOT, "tools")) if f.endswith(".py"))
DEV_TOOLS = ["dev/bench_ops.py", "dev/bench_ranks.py", "dev/profile_iteration.py", "dev/roidb_memory.py"]


def tool_path(name: str) -> str:
    return os.path.join(ROOT, "tools", name)


def tool_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FRCNN_DEBUG"}
    env.update(extra)
    return env


def run_tool_process(name: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, tool_path(name), *args], check=False, capture_output=True, text=True,
                          env=env or tool_env(), timeout=timeout, cwd=ROOT)


def run_tools(commands: dict[str, tuple], timeout: float = 180) -> dict[str, subprocess.CompletedProcess]:
    """Run several tools at once; ``commands``: key -> (tool, args, env or None); results by key."""
    procs = {
        key: subprocess.Popen([sys.executable, tool_path(tool), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env or tool_env(), cwd=ROOT)
        for key, (tool, args, env) in commands.items()
    }
    out = {}
    for key, p in procs.items():
        stdout, stderr = p.communicate(timeout=timeout)
        out[key] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def load_tool(name: str):
    """Import tools/<name> as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("tool_" + name.replace("/", "_")[:-3], tool_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Parser(Exception):
    pass


def tool_parser_of(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The ArgumentParser a tool builds (caught as it starts parsing)."""
    from frcnn.cli import ToolParser

    module = load_tool(name)

    def grab(self, args=None, namespace=None):
        raise _Parser(self)

    with monkeypatch.context() as m:
        m.setattr(ToolParser, "parse_args", grab)
        entry = getattr(module, "parse_args", None) or module.main
        with pytest.raises(_Parser) as e:
            entry([])
    return e.value.args[0]


def sample_value(action: argparse.Action) -> list[str]:
    """Command-line words that give ``action`` a valid value."""
    if action.nargs == 0:
        return []
    if action.choices:
        word = str(next(iter(action.choices)))
    elif action.type is int:
        word = "3"
    elif action.type is float:
        word = "1.5"
    else:
        word = "x.prototxt"
    n = action.nargs if isinstance(action.nargs, int) else 1
    return [word] * n


def minimal_argv(parser: argparse.ArgumentParser) -> list[str]:
    """The fewest words the parser accepts: its required options, positionals and required groups."""
    argv: list[str] = []
    positionals: list[str] = []
    for action in parser._actions:
        if not action.option_strings and action.nargs != argparse.REMAINDER:
            positionals += sample_value(action)
        elif action.required:
            argv += [action.option_strings[0], *sample_value(action)]
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            argv += [first.option_strings[0], *sample_value(first)]
    return argv + positionals
