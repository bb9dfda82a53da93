"""Where moto's Lambda answers differently from AWS's, made to answer as AWS does.

moto 5's ``PutFunctionEventInvokeConfig`` appends a new config to the function's list while
``GetFunctionEventInvokeConfig`` returns the first one, so a second Put is invisible: AWS's Put
overwrites ("If a configuration already exists for a function, version, or alias, this operation
overwrites it. If you exclude any settings, they are removed."). moto's
``UpdateFunctionEventInvokeConfig`` is a Put; AWS's changes only the settings it names.

:func:`install` patches moto's Lambda backend in this process (the sandbox's, or a test's that
uses moto in-process): idempotent, each patched method marked ``_iotbutton``.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Make moto's Put replace a function's event invoke config, and Update merge into it."""
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
