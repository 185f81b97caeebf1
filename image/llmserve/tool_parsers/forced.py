"""tool_choice "required" or a named function: decoding is constrained to JSON (the engine
enforces a StructuredOutput json_schema), so the call is read from JSON, whatever the model's
own tool format. A named function's output is its arguments object; "required" produces
`{"name": <one of the tools>, "arguments": {...}}`, the Hermes-style object."""

from __future__ import annotations

import json
from typing import Any

from llmserve.tool_parsers.base import ParsedCall, arguments_json

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def parameters_schema(parameters: dict[str, Any] | None) -> dict[str, Any]:
    return parameters if parameters else _ANY_OBJECT


def named_schema(parameters: dict[str, Any] | None) -> str:
    return json.dumps(parameters_schema(parameters))


def required_schema(functions: list[tuple[str, dict[str, Any] | None]]) -> str:
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": name},
                "arguments": parameters_schema(parameters),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name, parameters in functions
    ]
    return json.dumps(options[0] if len(options) == 1 else {"anyOf": options})


def named_call(name: str, text: str) -> ParsedCall:
    """The arguments are the text itself (valid JSON once the engine constrains it)."""
    return ParsedCall(name, text)


def required_call(text: str, tool_names: frozenset[str]) -> ParsedCall | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("name") not in tool_names:
        return None
    arguments = arguments_json(data.get("arguments", {}))
    return None if arguments is None else ParsedCall(data["name"], arguments)
