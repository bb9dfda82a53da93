"""Where buttons connect: the account's ATS data endpoint and the CA that signs it.

AWS IoT Core takes MQTT over mutual TLS on port 8883, and on port 443 for devices behind a
firewall that lets only HTTPS out: there the TLS ClientHello must offer the ALPN protocol
``x-amzn-mqtt-ca``, which tells IoT Core the connection is MQTT with a client certificate. The
sandbox's broker listens on one port of its own (it cannot bind 443): port 443 there means "offer
ALPN ``x-amzn-mqtt-ca`` on the broker's port", which it accepts as IoT Core does.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotbutton_cli.context import AppContext
from iotbutton_cli.errors import usage_error
from iotbutton_cli.registry import keyfiles

MQTT_TLS_PORT = 8883
MQTT_ALPN_PORT = 443
MQTT_PORTS = (MQTT_TLS_PORT, MQTT_ALPN_PORT)
MQTT_ALPN_PROTOCOL = "x-amzn-mqtt-ca"  # MQTT with an X.509 client certificate, on port 443


@dataclass
class Endpoint:
    host: str
    port: int
    ca_file: str
    alpn: bool = False  # offer ALPN x-amzn-mqtt-ca in the TLS handshake (port 443)

    @property
    def alpn_protocols(self) -> list[str]:
        """What the device offers in its ClientHello (nothing without ALPN)."""
        return [MQTT_ALPN_PROTOCOL] if self.alpn else []


def data_endpoint(ctx: AppContext, port: int | None = None) -> Endpoint:
    """The ``iot:Data-ATS`` endpoint; the legacy VeriSign one is never used. In the sandbox:
    its broker, and the sandbox CA that signs the broker's certificate.

    ``port`` 8883 (the default) or 443 (MQTT with ALPN ``x-amzn-mqtt-ca``); in the sandbox, 443
    is the broker's own port with ALPN (see the module docstring). Any other: ``bad-port``."""
    chosen = MQTT_TLS_PORT if port is None else port
    if chosen not in MQTT_PORTS:
        raise usage_error(
            "bad-port",
            f"AWS IoT Core takes MQTT with a client certificate on port 8883 or 443, not {port}.",
            "Use --port 8883 (the default) or --port 443 (ALPN x-amzn-mqtt-ca, for networks "
            "that let only HTTPS out).",
        )
    alpn = chosen == MQTT_ALPN_PORT
    if ctx.sandbox:
        info = ctx.sandbox_info
        return Endpoint(info.mqtt_host, int(info.mqtt_port), device_ca_file(ctx), alpn)
    response = ctx.client("iot").describe_endpoint(endpointType="iot:Data-ATS")
    return Endpoint(response["endpointAddress"], chosen, device_ca_file(ctx), alpn)


def device_ca_file(ctx: AppContext) -> str:
    """The CA a device must trust to verify the broker: Amazon Root CA 1 (written to the data
    folder), or in the sandbox the sandbox CA, which signs its broker's certificate."""
    if ctx.sandbox:
        return str(ctx.sandbox_info.ca_file)
    return str(keyfiles.amazon_root_ca())
