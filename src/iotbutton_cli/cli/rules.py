"""``iotbutton rules``: topic rules that send button clicks to the notifier."""

from __future__ import annotations

from typing import Annotated

import typer

from iotbutton_cli.cli import output
from iotbutton_cli.cli.common import JsonOption, YesOption, app_context

app = typer.Typer(
    help="Topic rules that route clicks to the notifier (one button, or only LONG clicks).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The rule's name (letters, digits, '_').")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Rule name.")] = None,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="e.g. \"SELECT * FROM 'iotbutton/+' WHERE clickType = 'LONG'\" "
            "(* becomes the notifier's fields; topic(2) AS topicSerial is added if missing)",
        ),
    ] = None,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Only this button's clicks.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Create (or update) a rule that invokes the deployed notifier, with its permission."""
    from iotbutton_cli.notify import rules

    created = rules.create_rule(app_context(ctx, json), name, sql, serial)
    rule_name, rule_sql = created.request.name, created.request.sql
    info, action = created.info, created.action
    if created.request.changed_select:
        output.info(
            f"Selected {rules.NOTIFIER_SELECT}: the notifier names the button by the topic it "
            "published to, and a payload cannot claim that name for itself."
        )
    if created.doubles_default_rule:
        output.info(
            f"Note: {rules.DEFAULT_RULE} also sends every click to the notifier, so clicks this "
            "rule matches will message twice. `iotbutton notify deploy --no-default-rule` "
            "leaves routing to your own rules."
        )
    if json:
        output.emit_json({**output.to_jsonable(info), "action": action})
    else:
        from rich.markup import escape  # the SQL may hold [...], which is Rich markup

        output.say(f"Rule {rule_name} {action}: {escape(rule_sql)}")


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the rules iotbutton made in this account and region."""
    from iotbutton_cli.notify import rules

    found = rules.list_rules(app_context(ctx, json))
    if json:
        output.emit_json(found)
        return
    if not found:
        output.info("No rules yet. `iotbutton notify deploy` creates the default one.")
        return
    output.table(
        None,
        ["rule", "SQL", "enabled", "permission"],
        [
            [r.name, r.sql, "yes" if r.enabled else "NO", "yes" if r.permission else "NO"]
            for r in found
        ],
    )


@app.command("show")
def show(ctx: typer.Context, name: NameArgument, json: JsonOption = False) -> None:
    """Show a rule as AWS has it now."""
    from iotbutton_cli.notify import rules

    info = rules.show_rule(app_context(ctx, json), name)
    if json:
        output.emit_json(info)
        return
    output.table(
        None,
        ["field", "value"],
        [
            ["name", info.name],
            ["ARN", info.arn],
            ["SQL", info.sql],
            ["enabled", "yes" if info.enabled else "NO (missing in AWS?)"],
            ["function", info.function_arn or "-"],
            ["invoke permission", "yes" if info.permission else "NO"],
        ],
    )


@app.command("delete")
def delete(
    ctx: typer.Context, name: NameArgument, yes: YesOption = False, json: JsonOption = False
) -> None:
    """Delete a rule and its Lambda permission."""
    from iotbutton_cli.notify import rules

    app_ctx = app_context(ctx, json)
    rules.show_rule(app_ctx, name)  # unknown names fail before the question
    output.confirm(f"Delete rule {name}?", yes)
    rules.delete_rule(app_ctx, name)
    if json:
        output.emit_json({"name": name, "deleted": True})
    else:
        output.say(f"Deleted rule {name} and its invoke permission.")
