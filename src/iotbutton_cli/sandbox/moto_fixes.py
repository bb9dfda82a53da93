"""Where moto answers differently from AWS, made to answer as AWS does.

moto 5's ``PutFunctionEventInvokeConfig`` appends a new config to the function's list while
``GetFunctionEventInvokeConfig`` returns the first one, so a second Put is invisible: AWS's Put
overwrites ("If a configuration already exists for a function, version, or alias, this operation
overwrites it. If you exclude any settings, they are removed."). moto's
``UpdateFunctionEventInvokeConfig`` is a Put; AWS's changes only the settings it names.

moto's IoT ``DescribeEndpoint`` makes up a new host name on every call; AWS's "returns or creates
a unique endpoint specific to the AWS account making the call ... All subsequent calls to
DescribeEndpoint return the same endpoint". And moto's iot-data answers only at the generic
``data-ats.iot.<region>`` host, not at the account's own ``<prefix>-ats.iot.<region>`` one that
DescribeEndpoint names and AWS documents for the shadow REST API: in-process, a request there
would not be mocked at all.

:func:`install` patches moto's backends in this process (the sandbox's, or a test's that uses
moto in-process): idempotent, each patched method marked ``_iotbutton``.
"""

from __future__ import annotations

from typing import Any

# The account's own ATS data endpoint, as DescribeEndpoint names it.
ACCOUNT_DATA_ENDPOINT = r"https?://[a-z0-9]+-ats\.iot\.(.+)\.amazonaws\.com"


def install() -> None:
    """Make moto's Put replace a function's event invoke config, and Update merge into it;
    keep one data endpoint per account and type, and serve iot-data there."""
    _install_iot()
    from moto.awslambda import models

    backend = models.LambdaBackend
    if getattr(backend.put_function_event_invoke_config, "_iotbutton", False):
        return

    def put(self: Any, function_name: str, config: dict[str, Any]) -> dict[str, Any]:
        fn = self.get_function(function_name)
        event_config = models.EventInvokeConfig(fn.function_arn, fn.last_modified, config)
        fn.event_invoke_config = [event_config]  # AWS overwrites; moto appended
        response: dict[str, Any] = event_config.response()
        return response

    def update(self: Any, function_name: str, config: dict[str, Any]) -> dict[str, Any]:
        fn = self.get_function(function_name)
        current = fn.event_invoke_config[0].config if fn.event_invoke_config else {}
        merged = {**current, **config}
        if "DestinationConfig" in config and "DestinationConfig" in current:
            merged["DestinationConfig"] = {
                **current["DestinationConfig"],
                **config["DestinationConfig"],
            }
        return put(self, function_name, merged)

    put._iotbutton = True  # type: ignore[attr-defined]
    update._iotbutton = True  # type: ignore[attr-defined]
    backend.put_function_event_invoke_config = put  # type: ignore[method-assign]
    backend.update_function_event_invoke_config = update  # type: ignore[method-assign]


def _install_iot() -> None:
    import re

    from moto import backend_index
    from moto.iot import models
    from moto.iotdata import urls

    backend = models.IoTBackend
    if getattr(backend.describe_endpoint, "_iotbutton", False):
        return
    original = backend.describe_endpoint

    def describe_endpoint(self: Any, endpoint_type: str) -> Any:
        kept = self.__dict__.setdefault("_iotbutton_endpoints", {})
        if endpoint_type not in kept:
            kept[endpoint_type] = original(self, endpoint_type)
        self.endpoint = kept[endpoint_type]
        return self.endpoint

    describe_endpoint._iotbutton = True  # type: ignore[attr-defined]
    backend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
    if ACCOUNT_DATA_ENDPOINT not in urls.url_bases:
        urls.url_bases.append(ACCOUNT_DATA_ENDPOINT)
        backend_index.backend_url_patterns.append(("iotdata", re.compile(ACCOUNT_DATA_ENDPOINT)))
