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

moto's ``AttachThingPrincipal`` drops ``thingPrincipalType``. AWS keeps it: an
``EXCLUSIVE_THING`` attachment makes the thing "the only thing that's attached to the principal"
(the certificate "cannot be associated with any other things"), and IoT Core then resolves
``${iot:Connection.Thing.ThingName}`` to that thing whatever the client id. Here each attachment's
type is kept beside moto's (:func:`principal_type`, :func:`exclusive_thing`, which the sandbox's
broker reads), an attachment that would break an exclusive one is refused with
``InvalidRequestException``, and the V2 listings report the type.

moto finds a certificate by ARN by scanning every certificate, on every attach, detach, update
and delete, so tearing down thousands of buttons took time quadratic in their number (1,000
buttons' ``clean``: 142 s, of which iotbutton's own work was 20 s). Here the certificate is
looked up by the id its ARN ends in: the same answer, at once. The other scans (things by name,
attachments by thing, certificate or policy) read the indexes of :mod:`moto_indexes`.

:func:`install` patches moto's backends in this process (the sandbox's, or a test's that uses
moto in-process): idempotent, each patched method marked ``_iotbutton``.
"""

from __future__ import annotations

from typing import Any

from iotbutton_cli.sandbox import moto_indexes

# The account's own ATS data endpoint, as DescribeEndpoint names it.
ACCOUNT_DATA_ENDPOINT = r"https?://[a-z0-9]+-ats\.iot\.(.+)\.amazonaws\.com"
EXCLUSIVE = "EXCLUSIVE_THING"
NON_EXCLUSIVE = "NON_EXCLUSIVE_THING"
# On an IoT backend: (principal ARN, thing name) -> its thingPrincipalType.
PRINCIPAL_TYPES = "_iotbutton_principal_types"


def install() -> None:
    """Make moto's Put replace a function's event invoke config, and Update merge into it;
    keep one data endpoint per account and type, and serve iot-data there; keep each thing
    attachment's type."""
    _install_iot()
    _install_thing_principal_types()
    _install_certificate_lookup()
    moto_indexes.install()
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


def _install_certificate_lookup() -> None:
    from moto.iot import models

    backend = models.IoTBackend
    if getattr(backend._get_principal, "_iotbutton", False):
        return
    original = backend._get_principal

    def get_principal(self: Any, principal_arn: str) -> Any:
        if ":cert/" in principal_arn:
            certificate = self.certificates.get(principal_arn.rsplit("/", 1)[-1])
            if certificate is not None and certificate.arn == principal_arn:
                return certificate
        return original(self, principal_arn)  # not found, or not a certificate: as moto does

    get_principal._iotbutton = True  # type: ignore[attr-defined]
    backend._get_principal = get_principal  # type: ignore[method-assign]


def principal_type(backend: Any, principal_arn: str, thing_name: str) -> str | None:
    """How the principal is attached to the thing (None: it is not)."""
    if (principal_arn, thing_name) not in backend.principal_things:
        return None
    types: dict[tuple[str, str], str] = backend.__dict__.get(PRINCIPAL_TYPES, {})
    return types.get((principal_arn, thing_name), NON_EXCLUSIVE)


def exclusive_thing(backend: Any, principal_arn: str) -> str | None:
    """The thing the principal is attached to exclusively, if it is."""
    for thing in moto_indexes.things_of_principal(backend, principal_arn):
        if principal_type(backend, principal_arn, thing) == EXCLUSIVE:
            return str(thing)
    return None


def _install_thing_principal_types() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot import models, responses
    from moto.iot.exceptions import InvalidRequestException

    backend = models.IoTBackend
    if getattr(backend.attach_thing_principal, "_iotbutton", False):
        return
    attach, detach = backend.attach_thing_principal, backend.detach_thing_principal

    def attach_typed(
        self: Any, thing_name: str, principal_arn: str, thing_principal_type: str | None = None
    ) -> None:
        kind = thing_principal_type or NON_EXCLUSIVE
        if kind not in (EXCLUSIVE, NON_EXCLUSIVE):
            raise InvalidRequestException(f"Invalid thingPrincipalType: {kind}")
        owner = exclusive_thing(self, principal_arn)
        if owner is not None and owner != thing_name:
            raise InvalidRequestException(
                f"The principal {principal_arn} is attached exclusively to the thing {owner}."
            )
        others = sorted(
            thing
            for thing in moto_indexes.things_of_principal(self, principal_arn)
            if thing != thing_name
        )
        if kind == EXCLUSIVE and others:
            raise InvalidRequestException(
                f"The principal {principal_arn} is attached to other things "
                f"({', '.join(others)}): it cannot be attached exclusively."
            )
        attach(self, thing_name, principal_arn)
        types = self.__dict__.setdefault(PRINCIPAL_TYPES, {})
        if owner is None:  # re-attaching as NON_EXCLUSIVE leaves an exclusive one as it is
            types[(principal_arn, thing_name)] = kind

    def detach_typed(self: Any, thing_name: str, principal_arn: str) -> None:
        detach(self, thing_name, principal_arn)
        self.__dict__.get(PRINCIPAL_TYPES, {}).pop((principal_arn, thing_name), None)

    def attach_response(self: Any) -> Any:
        self.iot_backend.attach_thing_principal(
            thing_name=self._get_param("thingName"),
            principal_arn=self._get_param("principal"),
            thing_principal_type=self._get_param("thingPrincipalType"),
        )
        return EmptyResult()

    def list_principal_things_v2(self: Any) -> Any:
        principal = self._get_param("principal")
        wanted = self._get_param("thingPrincipalType")
        found = [
            {"thingName": thing, "thingPrincipalType": kind}
            for thing in self.iot_backend.list_principal_things(principal_arn=principal)
            if (kind := principal_type(self.iot_backend, principal, thing)) is not None
            and wanted in (None, kind)
        ]
        return ActionResult({"principalThingObjects": found})

    def list_thing_principals_v2(self: Any) -> Any:
        thing = self._get_param("thingName")
        wanted = self._get_param("thingPrincipalType")
        found = [
            {"thingName": thing, "principal": principal, "thingPrincipalType": kind}
            for principal in self.iot_backend.list_thing_principals(thing_name=thing)
            if (kind := principal_type(self.iot_backend, principal, thing)) is not None
            and wanted in (None, kind)
        ]
        return ActionResult({"thingPrincipalObjects": found})

    patched: tuple[Any, ...] = (
        attach_typed,
        detach_typed,
        attach_response,
        list_principal_things_v2,
        list_thing_principals_v2,
    )
    for function in patched:
        function._iotbutton = True
    backend.attach_thing_principal = attach_typed  # type: ignore[method-assign]
    backend.detach_thing_principal = detach_typed  # type: ignore[method-assign]
    view = responses.IoTResponse
    view.attach_thing_principal = attach_response  # type: ignore[method-assign]
    view.list_principal_things_v2 = list_principal_things_v2  # type: ignore[method-assign]
    view.list_thing_principals_v2 = list_thing_principals_v2  # type: ignore[method-assign]
