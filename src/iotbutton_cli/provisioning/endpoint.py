"""Where buttons connect: the account's ATS data endpoint and the CA that signs it."""

from __future__ import annotations

from dataclasses import dataclass

from iotbutton_cli.context import AppContext
from iotbutton_cli.registry import keyfiles

MQTT_TLS_PORT = 8883


@dataclass
class Endpoint:
    host: str
    port: int
    ca_file: str


def data_endpoint(ctx: AppContext) -> Endpoint:
    """The ``iot:Data-ATS`` endpoint; the legacy VeriSign one is never used. In the sandbox:
    its broker, and the sandbox CA that signs the broker's certificate."""
    if ctx.sandbox:
        info = ctx.sandbox_info
        return Endpoint(info.mqtt_host, int(info.mqtt_port), device_ca_file(ctx))
    response = ctx.client("iot").describe_endpoint(endpointType="iot:Data-ATS")
    return Endpoint(response["endpointAddress"], MQTT_TLS_PORT, device_ca_file(ctx))


def device_ca_file(ctx: AppContext) -> str:
    """The CA a device must trust to verify the broker: Amazon Root CA 1 (written to the data
    folder), or in the sandbox the sandbox CA, which signs its broker's certificate."""
    if ctx.sandbox:
        return str(ctx.sandbox_info.ca_file)
    return str(keyfiles.amazon_root_ca())
