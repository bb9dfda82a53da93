"""Rendering: results on stdout (Rich for people, JSON for scripts), everything else on stderr.

Rich is imported on first use so ``--help`` never pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from iotbutton_cli.errors import ExitStatus, IotButtonError

_json_mode = False
NO_WRAP_COLUMNS = frozenset({"serial", "certificate", "created", "status", "button"})


def set_json_mode(enabled: bool) -> None:
    """Commands call this first, so errors raised later are printed as JSON too."""
    global _json_mode
    _json_mode = enabled


def json_mode() -> bool:
    return _json_mode


def stdout_console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=True)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {key: to_jsonable(item) for key, item in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A result line for people, on stdout."""
    stdout_console().print(message, highlight=False)


def info(message: str) -> None:
    """A line for people, on stderr; silent in JSON mode."""
    if not _json_mode:
        stderr_console().print(message, highlight=False)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    grid = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold", no_wrap=column in NO_WRAP_COLUMNS)
    for row in rows:
        grid.add_row(*["" if cell is None else str(cell) for cell in row])
    stdout_console().print(grid)


def render_error(error: IotButtonError) -> None:
    """One line and a hint on stderr (or ``{"error": ...}`` on stdout in JSON mode)."""
    if _json_mode:
        emit_json({"error": error.as_dict()})
        return
    from rich.markup import escape

    console = stderr_console()
    console.print(f"[bold red]Error:[/] {escape(error.message)}", highlight=False)
    if error.hint:
        console.print(f"[dim]Hint:[/] {escape(error.hint)}", highlight=False)


def confirm(question: str, assume_yes: bool) -> None:
    """Ask before acting; ``--yes`` skips the question. With ``--json`` or without a terminal
    nothing prompts, so only ``--yes`` lets the command act."""
    if assume_yes:
        return
    if _json_mode or not sys.stdin.isatty():
        raise IotButtonError(
            "needs-confirmation",
            "This command asks for confirmation, and cannot ask here (no terminal, or --json).",
            "Pass --yes to go ahead without asking.",
            ExitStatus.USAGE,
        )
    import typer

    if not typer.confirm(question, default=False, err=True):
        raise typer.Abort()


def progress() -> Any:
    """A progress bar on stderr that disappears when done (no bar in JSON mode)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
        disable=_json_mode,
    )
