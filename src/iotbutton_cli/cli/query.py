"""``--query``: a JMESPath expression applied to a command's ``--json`` output, as the AWS CLI's
``--query`` is, so scripts need no jq. jmespath ships with botocore; it is imported only when a
query is given."""

from __future__ import annotations

from typing import Any

from iotbutton_cli.errors import usage_error

EXAMPLE = "`--json --query 'buttons[].serial'`"


def compile_query(expression: str, json_mode: bool) -> Any:
    """The compiled expression; ``bad-query`` for one JMESPath cannot parse, ``query-needs-json``
    without ``--json`` (the tables for people are not data to select from)."""
    if not json_mode:
        raise usage_error(
            "query-needs-json",
            "--query selects from the JSON output: give --json too (or a command that has it).",
            f"For example {EXAMPLE}; `iotbutton COMMAND --help` says whether it takes --json.",
        )
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        problem = " ".join(str(exc).split())
        raise usage_error(
            "bad-query",
            f"--query {expression!r} is not a JMESPath expression: {problem}",
            f"For example {EXAMPLE}; the syntax: https://jmespath.org/specification.html",
        ) from None
