"""Trim Twilio's 2010-04-01 OpenAPI description down to the operations the Twilio stand-in serves.

The full description is 1.8 MB; the package only needs the operations the stand-in answers, to
validate requests against them: create, fetch and list Messages and Calls (the notifier creates
them; other clients read them back), update a Call, and fetch the Account. This script keeps
those operations, every component they reference (followed transitively), the security schemes
and the servers, and records the source file's SHA-256 in ``info`` so anyone can check where the
copy came from.

Usage (from the repository root)::

    python scripts/trim_twilio_spec.py [SOURCE] [--output PATH]

The output is deterministic: the same source always gives byte-identical output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "twilio" / "twilio_api_v2010.json"
DEFAULT_OUTPUT = REPO_ROOT / "src" / "iotbutton_cli" / "data" / "twilio_api_v2010_messaging.json"
KEPT_OPERATIONS = (
    ("/2010-04-01/Accounts/{AccountSid}/Messages.json", "post"),
    ("/2010-04-01/Accounts/{AccountSid}/Calls.json", "post"),
    ("/2010-04-01/Accounts/{AccountSid}/Messages.json", "get"),
    ("/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json", "get"),
    ("/2010-04-01/Accounts/{AccountSid}/Calls.json", "get"),
    ("/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json", "get"),
    ("/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json", "post"),
    ("/2010-04-01/Accounts/{Sid}.json", "get"),
)
PATH_ITEM_KEYS_KEPT = ("servers", "description", "parameters")
SOURCE_DESCRIPTION = (
    "twilio/twilio-oai tag 2.6.7 (commit d50069b44ea8cd23141385bdb6db48f16ff75bb5), "
    "spec/json/twilio_api_v2010.json, MIT licence (see TWILIO_OPENAPI_LICENSE)"
)


def iter_refs(node: Any) -> Iterator[str]:
    """Yield every ``$ref`` string found anywhere inside ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_refs(item)


def ref_location(ref: str) -> tuple[str, ...]:
    """Turn a local JSON pointer like ``#/components/schemas/x`` into its path segments."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported, got {ref!r}")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))


def lookup(document: dict[str, Any], location: tuple[str, ...]) -> Any:
    node: Any = document
    for part in location:
        node = node[part]
    return node


def place(target: dict[str, Any], location: tuple[str, ...], value: Any) -> None:
    node = target
    for part in location[:-1]:
        node = node.setdefault(part, {})
    node[location[-1]] = value


def referenced_components(source: dict[str, Any], roots: list[Any]) -> dict[str, Any]:
    """Collect the components reachable from ``roots`` by following ``$ref`` transitively."""
    components: dict[str, Any] = {}
    pending = [ref for root in roots for ref in iter_refs(root)]
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        location = ref_location(ref)
        if location[0] != "components":
            raise ValueError(f"reference outside components: {ref}")
        value = lookup(source, location)
        place(components, location[1:], value)
        pending.extend(iter_refs(value))
    return components


def security_schemes(source: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Security schemes are named, not ``$ref``-ed, by security requirements: keep those named."""
    requirements = list(source.get("security", []))
    for operation in operations:
        requirements.extend(operation.get("security", []))
    names = sorted({name for requirement in requirements for name in requirement})
    schemes = source["components"]["securitySchemes"]
    return {name: schemes[name] for name in names}


def trim(source: dict[str, Any], source_sha256: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    operations: list[dict[str, Any]] = []
    for path, method in KEPT_OPERATIONS:
        path_item = source["paths"][path]
        kept = paths.setdefault(
            path, {key: path_item[key] for key in PATH_ITEM_KEYS_KEPT if key in path_item}
        )
        kept[method] = path_item[method]
        operations.append(path_item[method])

    components = referenced_components(source, list(paths.values()))
    components["securitySchemes"] = security_schemes(source, operations)
    tag_names = {tag for operation in operations for tag in operation.get("tags", [])}

    info = dict(source["info"])
    info["x-iotbutton-trimmed-from"] = {
        "source": SOURCE_DESCRIPTION,
        "sha256": source_sha256,
        "operations": [f"{method.upper()} {path}" for path, method in KEPT_OPERATIONS],
        "script": "scripts/trim_twilio_spec.py",
    }
    trimmed = {
        "openapi": source["openapi"],
        "info": info,
        "servers": source["servers"],
        "security": source.get("security", []),
        "tags": [tag for tag in source.get("tags", []) if tag["name"] in tag_names],
        "paths": paths,
        "components": components,
    }
    check_closed(trimmed)
    return trimmed


def check_closed(document: dict[str, Any]) -> None:
    """Fail loudly if any reference in the trimmed document points at something left out."""
    for ref in iter_refs(document):
        try:
            lookup(document, ref_location(ref))
        except KeyError:
            raise SystemExit(f"trimmed spec is missing {ref}") from None


def render(document: dict[str, Any]) -> str:
    # ensure_ascii keeps Twilio's \\uXXXX escapes as escapes, so the file stays plain ASCII.
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    raw = args.source.read_bytes()
    source = json.loads(raw)
    trimmed = trim(source, hashlib.sha256(raw).hexdigest())
    text = render(trimmed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="ascii")
    print(f"wrote {args.output} ({len(text.encode()):,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
