"""docs/cli.md, generated from the real ``--help`` of every command, so the reference cannot drift.

``make docs`` (or ``python -m sql_dl.cli.reference docs/cli.md``) rewrites it; tests/test_docs.py fails
when the file differs from what the commands say.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .command import main

HEADER = ("# `sql-dl` command reference\n\n"
          "Generated from each command's `--help` by `make docs`; do not edit by hand.\n")


def commands(group: click.Group = main, prefix: str = "sql-dl") -> list[tuple[str, click.Command]]:
    """(full name, command) for the group and every subcommand, depth first, in alphabetical order."""
    found = [(prefix, group)]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


def help_text(name: str, command: click.Command) -> str:
    with click.Context(command, info_name=name, terminal_width=100, max_content_width=100) as context:
        return command.get_help(context)


def render() -> str:
    sections = [f"\n## `{name}`\n\n```text\n{help_text(name, command)}\n```\n" for name, command in commands()]
    return HEADER + "".join(sections)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render(), encoding="utf-8")
