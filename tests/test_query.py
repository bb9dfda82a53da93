"""`--query`: a JMESPath expression over any command's --json output, as the AWS CLI's."""

from __future__ import annotations

import json

SERIAL = "G030JF0553648RUH"
OTHER = "G030RQ9940375SLS"


def test_query_selects_from_the_json_result(cli, iot):
    cli("things", "create", SERIAL)
    cli("things", "create", OTHER)

    serials = cli("things", "list", "--json", "--query", "[].serial")
    created = cli("things", "create", SERIAL, "--json", "--query", "buttons[0].action")

    assert json.loads(serials.stdout) == sorted([SERIAL, OTHER])
    assert json.loads(created.stdout) == "unchanged"


def test_query_goes_before_or_after_the_command(cli, iot):
    cli("things", "create", SERIAL)

    before = cli(
        "--query", "[?serial=='G030JF0553648RUH'].files.certificate", "things", "list", "--json"
    )
    after = cli(
        "things", "list", "--json", "--query=[?serial=='G030JF0553648RUH'].files.certificate"
    )

    assert before.stdout == after.stdout
    [path] = json.loads(before.stdout)
    assert path.endswith("-certificate.pem.crt")


def test_a_query_that_selects_nothing_prints_null(cli, iot):
    cli("things", "create", SERIAL)

    result = cli("things", "list", "--json", "--query", "[0].no_such_key")

    assert result.stdout == "null\n"


def test_a_bad_expression_is_a_one_line_usage_error_before_any_work(cli, iot):
    result = cli("things", "create", SERIAL, "--json", "--query", "buttons[", code=2)

    error = json.loads(result.stdout)["error"]  # an error is printed whole, never queried
    assert error["code"] == "bad-query"
    assert error["message"].startswith("--query 'buttons[' is not a JMESPath expression: ")
    assert "\n" not in error["message"]
    assert iot.list_things()["things"] == []  # refused before anything was made

    people = cli("things", "list", "--query", "[", "--json", code=2)
    assert "bad-query" in people.stdout and "Traceback" not in people.stdout + people.stderr


def test_query_needs_json(cli, iot):
    result = cli("things", "list", "--query", "[].serial", code=2)

    assert result.stderr.startswith("Error: --query selects from the JSON output: give --json")
    assert "Traceback" not in result.stderr


def test_a_stream_is_queried_line_by_line_and_a_line_it_selects_nothing_of_is_left_out(
    cli, sandbox, tmp_path
):
    cli("--sandbox", "things", "create", SERIAL)

    ran = cli(
        "--sandbox",
        "device",
        "run",
        "--keyboard",
        "--queue-dir",
        str(tmp_path / "queue"),
        "--json",
        "--query",
        "event=='sent' && payload.clickType || null",
        input="l\n",
    )

    assert ran.stdout.splitlines() == ['"LONG"']
