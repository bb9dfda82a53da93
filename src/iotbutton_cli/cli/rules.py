"""``iotbutton rules``: topic rules that send button clicks to the notifier."""

from __future__ import annotations

from typing import Annotated

import typer

from iotbutton_cli.cli import views
from iotbutton_cli.cli.common import JsonOption, YesOption, command_context

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
            "(* becomes the notifier's fields; topicSerial and clickedAt are added if missing)",
        ),
    ] = None,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Only this button's clicks.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Create (or update) a rule that invokes the deployed notifier, with its permission."""
    from iotbutton_cli.notify import rules

    app_ctx, out = command_context(ctx, json)
    created = rules.create_rule(app_ctx, name, sql, serial)
    rule_name, rule_sql = created.request.name, created.request.sql
    info, action = created.info, created.action
    if created.request.changed_select:
        out.info(
            f"Selected {rules.NOTIFIER_SELECT}: the notifier names the button by the topic it "
            "published to and tells the time AWS IoT received the click; a payload cannot claim "
            "either for itself."
        )
    if created.doubles_default_rule:
        out.info(
            f"Note: {rules.DEFAULT_RULE} also sends every click to the notifier, so clicks this "
            "rule matches will message twice. `iotbutton notify deploy --no-default-rule` "
            "leaves routing to your own rules."
        )

    def render() -> None:
        from rich.markup import escape  # the SQL may hold [...], which is Rich markup

        out.say(f"Rule {rule_name} {action}: {escape(rule_sql)}")

    out.result(views.rule_created_view(info, action), human=render)


@app.command("list")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the rules iotbutton made in this account and region."""
    from iotbutton_cli.notify import rules

    app_ctx, out = command_context(ctx, json)
    found = rules.list_rules(app_ctx)

    def render() -> None:
        if not found:
            out.info("No rules yet. `iotbutton notify deploy` creates the default one.")
            return
        out.table(
            None,
            ["rule", "SQL", "enabled", "permission"],
            [
                [r.name, r.sql, "yes" if r.enabled else "NO", "yes" if r.permission else "NO"]
                for r in found
            ],
        )

    out.result([views.rule_view(r) for r in found], human=render)


@app.command("show")
def show(ctx: typer.Context, name: NameArgument, json: JsonOption = False) -> None:
    """Show a rule as AWS has it now."""
    from iotbutton_cli.notify import rules

    app_ctx, out = command_context(ctx, json)
    info = rules.show_rule(app_ctx, name)
    out.result(
        views.rule_view(info),
        human=lambda: out.table(
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
        ),
    )


@app.command("delete")
def delete(
    ctx: typer.Context, name: NameArgument, yes: YesOption = False, json: JsonOption = False
) -> None:
    """Delete a rule and its Lambda permission."""
    from iotbutton_cli.notify import rules

    app_ctx, out = command_context(ctx, json)
    rules.show_rule(app_ctx, name)  # unknown names fail before the question
    out.confirm(f"Delete rule {name}?", yes)
    rules.delete_rule(app_ctx, name)
    out.result(
        views.rule_deleted_view(name),
        human=lambda: out.say(f"Deleted rule {name} and its invoke permission."),
    )
