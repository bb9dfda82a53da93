"""Rendering: results on stdout (Rich for people, JSON for scripts), everything else on stderr.

A command gets its :class:`Output` from :func:`iotbutton_cli.cli.common.command_context` and
hands it each result twice: as a *view* (a plain dict or list from :mod:`.views`, what ``--json``
prints) and as a *human* renderer (a function that prints tables and lines for people)::

    app_ctx, out = command_context(ctx, json)
    out.result(views.endpoint_view(found), human=lambda: out.table(...))

Whether this run prints JSON lives on the Output, one per invocation, kept in the click
context's ``meta`` (which click shares between a command's context and all its parents), so the
error handler in :mod:`.app` finds the same Output when the command fails, without any module
state. Rich is imported on first use so ``--help`` never pays for it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from iotbutton_cli.errors import ExitStatus, IotButtonError

NO_WRAP_COLUMNS = frozenset({"serial", "certificate", "created", "status", "button"})
META_KEY = "iotbutton.output"
# A command quoted for pasting (`iotbutton things list`), but not one that needs no --sandbox
# (the sandbox group, paths, demo) or has it already.
QUOTED_COMMAND = re.compile(r"`iotbutton (?!--sandbox\b|sandbox\b|paths\b|demo\b|--help\b)")


class Output:
    """How this invocation prints: JSON on stdout for scripts (``--json``), or Rich for people.

    With ``sandbox_flag`` (``--sandbox`` was given, not ``IOTBUTTON_SANDBOX``), every command
    quoted in a line, a hint or a next step gets ``--sandbox``, so pasting it reaches the same
    sandbox and not the user's AWS account."""

    def __init__(self, json_mode: bool = False, sandbox_flag: bool = False) -> None:
        self.json = json_mode
        self.sandbox_flag = sandbox_flag
        self.query: Any = None  # a compiled --query (cli/query.py), applied to every result

    def pasteable(self, text: str) -> str:
        """``text`` with every quoted command runnable as printed in this mode."""
        if not self.sandbox_flag:
            return text
        return QUOTED_COMMAND.sub("`iotbutton --sandbox ", text)

    # -- where it lives -----------------------------------------------------------------------

    def attach(self, ctx: Any) -> Output:
        """Make this the Output that errors of this invocation are printed through."""
        ctx.meta[META_KEY] = self
        return self

    @classmethod
    def of(cls, ctx: Any) -> Output:
        """The invocation's Output; before a command has made one (an error in option parsing,
        or a Ctrl-C before the command began), a human one."""
        found = ctx.meta.get(META_KEY) if ctx is not None else None
        return found if isinstance(found, Output) else cls()

    # -- results ------------------------------------------------------------------------------

    def result(self, view: Any, *, human: Callable[[], None]) -> None:
        """The command's result: ``view`` as JSON in JSON mode, otherwise ``human()``."""
        if self.json:
            self.write_json(view)
        else:
            human()

    def write_json(self, view: Any) -> None:
        """One JSON document on stdout (indented, as every ``--json`` result is), or what
        ``--query`` selects of it."""
        if self.query is not None:
            view = self._selected(view)
        sys.stdout.write(json.dumps(view, indent=2, default=str) + "\n")
        sys.stdout.flush()

    def json_line(self, view: Any) -> None:
        """One compact JSON object and a newline: for commands that stream (JSON Lines). With
        ``--query``, what it selects of each line; a line it selects nothing of is left out, so
        a query can filter a stream."""
        if self.query is not None:
            view = self._selected(view)
            if view is None:
                return
        sys.stdout.write(json.dumps(view) + "\n")
        sys.stdout.flush()

    def _selected(self, view: Any) -> Any:
        """What ``--query`` selects of ``view``, searched as the JSON it prints (a datetime is
        its text there)."""
        return self.query.search(json.loads(json.dumps(view, default=str)))

    # -- for people -----------------------------------------------------------------------------

    @staticmethod
    def stdout_console() -> Any:
        from rich.console import Console

        return Console(soft_wrap=True)

    @staticmethod
    def stderr_console() -> Any:
        from rich.console import Console

        return Console(stderr=True, soft_wrap=True)

    def say(self, message: str) -> None:
        """A result line for people, on stdout."""
        self.stdout_console().print(self.pasteable(message), highlight=False)

    def info(self, message: str) -> None:
        """A line for people, on stderr; silent in JSON mode."""
        if not self.json:
            self.stderr_console().print(self.pasteable(message), highlight=False)

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
        from rich.table import Table

        grid = Table(title=title, show_lines=False, header_style="bold")
        for column in columns:
            grid.add_column(column, overflow="fold", no_wrap=column in NO_WRAP_COLUMNS)
        for row in rows:
            grid.add_row(*["" if cell is None else str(cell) for cell in row])
        self.stdout_console().print(grid)

    def progress(self) -> Any:
        """A progress bar on stderr that disappears when done (no bar, and no Rich, in JSON
        mode)."""
        if self.json:
            return _NoProgress()
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.stderr_console(),
            transient=True,
            disable=self.json,
        )

    # -- asking and failing ---------------------------------------------------------------------

    def confirm(self, question: str, assume_yes: bool) -> None:
        """Ask before acting; ``--yes`` skips the question. With ``--json`` or without a
        terminal nothing prompts, so only ``--yes`` lets the command act."""
        if assume_yes:
            return
        if self.json or not sys.stdin.isatty():
            raise IotButtonError(
                "needs-confirmation",
                "This command asks for confirmation, and cannot ask here (no terminal, or --json).",
                "Pass --yes to go ahead without asking.",
                ExitStatus.USAGE,
            )
        import typer

        if not typer.confirm(question, default=False, err=True):
            raise typer.Abort()

    def error(self, error: IotButtonError) -> None:
        """One line and a hint on stderr (or ``{"error": ...}`` on stdout in JSON mode)."""
        if self.sandbox_flag:
            from dataclasses import replace

            error = replace(
                error, message=self.pasteable(error.message), hint=self.pasteable(error.hint)
            )
        if self.json:
            from iotbutton_cli.cli.views import error_view

            self.query = None  # an error is printed whole, as the AWS CLI does
            self.write_json({"error": error_view(error)})
            return
        from rich.markup import escape

        console = self.stderr_console()
        console.print(f"[bold red]Error:[/] {escape(error.message)}", highlight=False)
        if error.hint:
            console.print(f"[dim]Hint:[/] {escape(error.hint)}", highlight=False)


class _NoProgress:
    """What a progress bar offers commands, doing nothing: JSON output has no bar."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        return None
