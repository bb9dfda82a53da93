"""A stolen certificate cannot speak for another button, end to end through the sandbox.

The certificate may publish only to its own topic (the IoT policy says so), but its payload can
claim any serial and carry any text. The default rule adds the topic's serial, the notifier names
the button by it, and the people get the real button's name.
"""

from __future__ import annotations

import json

from support import notify_init_args, wait_for_outbox

SERIAL = "G030JF0553648RUH"
VICTIM = "G030VICTIM000001"
SMS_TO = "+15551230001"


def test_a_forged_serial_in_the_payload_is_not_what_the_people_read(cli, sandbox):
    cli("--sandbox", "things", "create", SERIAL)
    cli("--sandbox", *notify_init_args("Grandma", SMS_TO))
    cli("--sandbox", "notify", "deploy")
    forged = {
        "serialNumber": VICTIM,
        "topicSerial": VICTIM,
        "batteryVoltage": "1650mV",
        "clickType": "LONG",
    }

    sent = cli.json("--sandbox", "sim", "send", "--as", SERIAL, "--message", json.dumps(forged))

    assert sent["topic"] == f"iotbutton/{SERIAL}"
    [message] = wait_for_outbox(cli, 1)
    assert message["http_status"] == 201
    assert SERIAL in message["fields"]["Body"]
    assert VICTIM not in message["fields"]["Body"]
    logs = cli("--sandbox", "notify", "logs").stdout
    assert f"payload serialNumber '{VICTIM}' differs from the topic's '{SERIAL}'" in logs
