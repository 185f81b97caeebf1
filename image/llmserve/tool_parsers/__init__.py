"""Tool-call parsers, one per format family, and the choice of one for a tokenizer.

`LLMSERVE_TOOL_PARSER` (read by server.py) names one: `hermes` (JSON in `<tool_call>` tags:
Hermes, Qwen, SmolLM3) or `glm` (ChatGLM3 / GLM-4: the function name on its own line, then the
arguments); `auto` (the default) picks `glm` when the chat template has GLM's `<|observation|>`
role and `hermes` otherwise."""

from __future__ import annotations

from typing import Any

from llmserve.tool_parsers.base import Parsed, ParsedCall, ToolParser
from llmserve.tool_parsers.glm import GlmParser
from llmserve.tool_parsers.hermes import HermesParser

PARSERS: dict[str, type[HermesParser] | type[GlmParser]] = {
    "hermes": HermesParser,
    "glm": GlmParser,
}
CHOICES = ("auto", *PARSERS)


def pick_parser(tokenizer: Any, setting: str = "auto") -> ToolParser:
    """The parser named by `setting`, or the one the chat template implies."""
    setting = setting.strip().lower() or "auto"
    if setting not in CHOICES:
        raise ValueError(
            f"LLMSERVE_TOOL_PARSER={setting!r} is not allowed; allowed: {', '.join(CHOICES)}"
        )
    if setting != "auto":
        return PARSERS[setting]()
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and "<|observation|>" in template:
        return GlmParser()
    return HermesParser()


__all__ = ["CHOICES", "PARSERS", "Parsed", "ParsedCall", "ToolParser", "pick_parser"]
