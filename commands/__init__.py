"""The commands of ``xfer``, one module per family, each command a few lines over one library function.

``COMMANDS`` says which module holds each command; ``cli.py`` loads a command's module only when
it runs (click's lazy group), so ``xfer models`` never loads scikit-learn and ``xfer --help`` starts
at once.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import click

from commands._options import CONTEXT_SETTINGS

COMMANDS = {
    "audit": "commands._evaluate",
    "card": "commands._evaluate",
    "embed": "commands._featurize",
    "evaluate": "commands._evaluate",
    "export": "commands._index",
    "featurize": "commands._featurize",
    "fewshot": "commands._heads",
    "finetune": "commands._finetune",
    "fit": "commands._heads",
    "index": "commands._index",
    "info": "commands._featurize",
    "layers": "commands._featurize",
    "merge": "commands._featurize",
    "models": "commands._featurize",
    "predict": "commands._evaluate",
    "rank": "commands._heads",
    "search": "commands._index",
    "shift": "commands._evaluate",
    "suggest": "commands._evaluate",
    "update": "commands._update",
}


def load_command(name: str) -> click.Command | None:
    """The command called ``name``, its module loaded now; None for a name xfer does not have."""
    if name not in COMMANDS:
        return None
    command = getattr(importlib.import_module(COMMANDS[name]), name)
    assert isinstance(command, click.Command) and command.name == name, name
    return command


def short_help(name: str, limit: int = 45) -> str:
    """The first line of a command's help, as click shows it in ``xfer --help``, read from its
    module's source without running it (listing the commands must not load every library)."""
    source = importlib.util.find_spec(COMMANDS[name]).origin
    tree = ast.parse(Path(source).read_text(encoding="utf-8"))
    (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    return click.utils.make_default_short_help(ast.get_docstring(function) or "", limit)


def all_commands() -> dict[str, click.Command]:
    """Every command by name, each module loaded (for the docs and the tests that walk them all)."""
    return {name: load_command(name) for name in COMMANDS}


__all__ = ["COMMANDS", "CONTEXT_SETTINGS", "all_commands", "load_command", "short_help"]
