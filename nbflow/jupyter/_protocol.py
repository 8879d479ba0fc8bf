"""The monitor's wire protocol, written once in protocol.json (a JSON Schema) and read from there.

The kernel side takes its version from it; the front-end's types (extension/src/protocol.ts) are
generated from it: ``python -m nbflow.jupyter._protocol > extension/src/protocol.ts``. The tests
check that protocol.ts is up to date and that the messages the model really builds validate.

Pure: the standard library only. Importing it costs about 0.26 ms (measured with bytecode cached),
most of it reading and parsing the 16 kB schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "VERSION", "typescript"]

SCHEMA: dict[str, Any] = json.loads((Path(__file__).with_name("protocol.json")).read_text(encoding="utf-8"))
VERSION: int = SCHEMA["version"]
"""Version of the protocol: a front-end ignores a snapshot of another version."""

_PRIMITIVES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "null": "null"}


def typescript(schema: dict[str, Any] = SCHEMA) -> str:
    """The TypeScript types of every definition of ``schema`` (the contents of protocol.ts)."""
    import textwrap  # a developer's tool: kept off the import

    out = [
        "// Generated from nbflow/jupyter/protocol.json by `python -m nbflow.jupyter._protocol`: do not edit.",
        *textwrap.wrap(f"{schema['title']}: {schema['description']}", 110, initial_indent="// ", subsequent_indent="// "),
        "",
        "/** Version of the protocol: a front-end ignores a snapshot of another version. */",
        f"export const PROTOCOL = {schema['version']};",
    ]
    for name, definition in schema["$defs"].items():
        out.append("")
        out.append(f"/** {definition['description']} */")
        if "properties" in definition:
            out.append(f"export interface {name} {{")
            required = set(definition.get("required", ()))
            for key, prop in definition["properties"].items():
                out.append(f"  /** {prop['description']} */")
                out.append(f"  {key}{'' if key in required else '?'}: {_type(prop)};")
            out.append("}")
        else:
            out.append(f"export type {name} = {_type(definition)};")
    return "\n".join(out) + "\n"


def _type(node: dict[str, Any]) -> str:
    """One schema node as a TypeScript type (the subset of JSON Schema protocol.json uses)."""
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(value) for value in node["enum"])
    if "anyOf" in node:
        return " | ".join(_type(option) for option in node["anyOf"])
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(_PRIMITIVES[k] for k in kind)
    if kind == "array":
        if "prefixItems" in node:  # a tuple, its elements named by their titles
            return "[" + ", ".join(f"{item['title']}: {_type(item)}" for item in node["prefixItems"]) + "]"
        item = _type(node["items"])
        return f"({item})[]" if " | " in item else f"{item}[]"
    if kind == "object":
        return f"Record<string, {_type(node['additionalProperties'])}>"
    return _PRIMITIVES[kind]


if __name__ == "__main__":
    print(typescript(), end="")
