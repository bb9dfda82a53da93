"""Indexes for moto's IoT lookups that scan every record, so cost per button stays flat.

moto 5 keeps attachments as ``{(principal ARN, thing or policy name): ...}`` and things by ARN,
then answers most questions by scanning: ``DescribeThing`` scans every thing for its name,
``DeleteThing`` every attachment for the thing, ``DeleteCertificate`` every attachment (twice),
and the ``List*Principal*`` / ``ListAttachedPolicies`` calls every attachment. Tearing down 5,000
buttons therefore cost moto twice the CPU per button that 100 did (55 against 28 ms).

Here those three mappings become dicts that also index their keys, kept current by every write
moto makes to them, and the scanning methods read the index instead: the same answers, in the
same order (insertion order, as moto's scans give), at a cost that does not grow with the
account. A backend made before :func:`install` (or re-made by moto's reset) is indexed the first
time one of these methods meets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Any

_CONVERTING = threading.Lock()


class IndexedDict(dict[Any, Any]):
    """A dict that also keeps its keys grouped by ``index(key, value)``, in insertion order.

    Every mutator goes through :meth:`__setitem__` / :meth:`__delitem__`, which a plain dict
    subclass does not do by itself."""

    def __init__(self, index: Callable[[Any, Any], Iterable[tuple[str, Hashable]]]) -> None:
        super().__init__()
        self._index = index
        self._groups: dict[tuple[str, Hashable], dict[Any, None]] = {}
        self._lock = threading.RLock()

    def keys_where(self, field: str, value: Hashable) -> list[Any]:
        with self._lock:
            return list(self._groups.get((field, value), ()))

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._lock:
            kept: set[tuple[str, Hashable]] = set()
            if key in self:  # an overwrite keeps its place, as in a dict
                kept = set(self._index(key, value))
                self._ungroup(key, self[key], keep=kept)
            super().__setitem__(key, value)
            for group in self._index(key, value):
                if group not in kept:
                    self._groups.setdefault(group, {})[key] = None

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            self._ungroup(key, self[key])
            super().__delitem__(key)

    def _ungroup(self, key: Any, value: Any, keep: Collection[tuple[str, Hashable]] = ()) -> None:
        for group in self._index(key, value):
            if group in keep:
                continue
            members = self._groups.get(group)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._groups[group]

    def pop(self, key: Any, *default: Any) -> Any:
        with self._lock:
            if key not in self:
                if default:
                    return default[0]
                raise KeyError(key)
            value = self[key]
            del self[key]
            return value

    def popitem(self) -> tuple[Any, Any]:
        with self._lock:
            key = next(reversed(self))
            return key, self.pop(key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self:
                self[key] = default
            return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            for key, value in dict(*args, **kwargs).items():
                self[key] = value

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self._groups.clear()


def _pair(key: tuple[str, str], _value: Any) -> Iterable[tuple[str, Hashable]]:
    return (("first", key[0]), ("second", key[1]))


def _thing_name(_arn: str, thing: Any) -> Iterable[tuple[str, Hashable]]:
    return (("name", thing.thing_name),)


_INDEXES: dict[str, Callable[[Any, Any], Iterable[tuple[str, Hashable]]]] = {
    "things": _thing_name,
    "principal_things": _pair,
    "principal_policies": _pair,
}


def indexed(backend: Any, attribute: str) -> IndexedDict:
    """The backend's mapping, made an :class:`IndexedDict` (in place, once) if it is not."""
    current = getattr(backend, attribute)
    if isinstance(current, IndexedDict):
        return current
    with _CONVERTING:
        current = getattr(backend, attribute)
        if not isinstance(current, IndexedDict):
            replacement = IndexedDict(_INDEXES[attribute])
            replacement.update(current)
            setattr(backend, attribute, replacement)
            current = replacement
    return current


def principals_of_thing(backend: Any, thing_name: str) -> list[str]:
    """The principals attached to the thing, in the order they were attached."""
    attached = indexed(backend, "principal_things")
    return [key[0] for key in attached.keys_where("second", thing_name)]


def things_of_principal(backend: Any, principal_arn: str) -> list[str]:
    """The things the principal is attached to, in the order they were attached."""
    attached = indexed(backend, "principal_things")
    return [key[1] for key in attached.keys_where("first", principal_arn)]


def install() -> None:
    """Have moto's scanning IoT methods read the indexes (idempotent)."""
    from moto.iot import models
    from moto.iot.exceptions import (
        CertificateStateException,
        DeleteConflictException,
        ResourceNotFoundException,
        ThingStillAttached,
    )

    backend = models.IoTBackend
    if getattr(backend.describe_thing, "_iotbutton", False):
        return

    def describe_thing(self: Any, thing_name: str) -> Any:
        arns = indexed(self, "things").keys_where("name", thing_name)
        if not arns:
            raise ResourceNotFoundException()
        return self.things[arns[0]]

    def delete_thing(self: Any, thing_name: str) -> None:
        thing = self.describe_thing(thing_name)
        if principals_of_thing(self, thing_name):
            raise ThingStillAttached(thing_name)
        for billing_group in self.billing_groups.values():
            if thing.arn in billing_group.things:
                billing_group.things.remove(thing.arn)
                thing.billing_group_name = None
        del self.things[thing.arn]

    def list_thing_principals(self: Any, thing_name: str) -> list[str]:
        if not indexed(self, "things").keys_where("name", thing_name):
            raise ResourceNotFoundException(
                f"Failed to list principals for thing {thing_name} because the thing does "
                "not exist in your account"
            )
        return principals_of_thing(self, thing_name)

    def list_principal_things(self: Any, principal_arn: str) -> list[str]:
        return things_of_principal(self, principal_arn)

    def policies_of(self: Any, principal_arn: str) -> list[Any]:
        attached = indexed(self, "principal_policies")
        return [attached[key][1] for key in attached.keys_where("first", principal_arn)]

    def list_principal_policies(self: Any, principal_arn: str) -> list[Any]:
        return policies_of(self, principal_arn)

    def list_attached_policies(self: Any, target: str) -> list[Any]:
        return policies_of(self, target)

    def list_policy_principals(self: Any, policy_name: str) -> list[str]:
        attached = indexed(self, "principal_policies")
        return [key[0] for key in attached.keys_where("second", policy_name)]

    def delete_policy(self: Any, policy_name: str) -> None:
        if list_policy_principals(self, policy_name):
            raise DeleteConflictException(
                "The policy cannot be deleted as the policy is attached to one or more "
                f"principals (name={policy_name})"
            )
        policy = self.get_policy(policy_name)
        if len(policy.versions) > 1:
            raise DeleteConflictException(
                "Cannot delete the policy because it has one or more policy versions "
                f"attached to it (name={policy_name})"
            )
        del self.policies[policy.name]

    def describe_certificate(self: Any, certificate_id: str) -> Any:
        certificate = self.certificates.get(certificate_id)
        if certificate is None or certificate.certificate_id != certificate_id:
            raise ResourceNotFoundException()
        return certificate

    def validation_delete(self: Any, cert: Any, force_delete: bool = False) -> None:
        # moto compares each attachment's principal by certificate id; a certificate principal
        # is keyed by its exact ARN (moto's _get_principal matches the ARN exactly).
        if cert.status == "ACTIVE":
            raise CertificateStateException(
                "Certificate must be deactivated (not ACTIVE) before deletion.",
                cert.certificate_id,
            )
        if things_of_principal(self, cert.arn):
            raise DeleteConflictException(
                f"Things must be detached before deletion (arn: {cert.arn})"
            )
        if indexed(self, "principal_policies").keys_where("first", cert.arn) and not force_delete:
            raise DeleteConflictException(
                f"Certificate policies must be detached before deletion (arn: {cert.arn})"
            )

    patched: dict[str, Any] = {
        "describe_thing": describe_thing,
        "delete_thing": delete_thing,
        "list_thing_principals": list_thing_principals,
        "list_principal_things": list_principal_things,
        "list_principal_policies": list_principal_policies,
        "list_attached_policies": list_attached_policies,
        "list_policy_principals": list_policy_principals,
        "delete_policy": delete_policy,
        "describe_certificate": describe_certificate,
        "_validation_delete": validation_delete,
    }
    for name, function in patched.items():
        function._iotbutton = True
        setattr(backend, name, function)
