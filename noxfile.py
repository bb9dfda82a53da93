"""Developer tasks. Sessions use the interpreter nox runs on, so no other Python is needed."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


def test_workers() -> str:
    """Two pytest workers per core: many tests spend most of their time waiting (on a sandbox
    process, a Lambda worker, a killed subprocess), so one per core leaves cores idle."""
    import os

    return str(2 * (os.cpu_count() or 1))


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, in parallel: idle workers take queued tests from busy ones."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", test_workers(), "--dist", "worksteal", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", "mypy>=1.10", "types-PyYAML")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: a click becomes an SMS and a call, offline, in a private sandbox."""
    session.install(".")
    session.run("iotbutton", "demo", *session.posargs)
    session.log(
        "That `iotbutton` lives in .nox/demo, which is not on your PATH. To run the commands "
        "above yourself: `pipx install .` from this checkout (`pipx install iotbutton-cli` once "
        "it is published), or `. .nox/demo/bin/activate` for this shell."
    )


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Start-up, bulk work, the AWS rate ceiling, clicks: a Markdown table (-- --quick: faster)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)
