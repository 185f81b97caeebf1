"""Command-line parsing where an option's value may start with '-'.

argparse reads `--api-key -x7` as a missing value followed by an unknown option `-x7`. API keys,
tokens and model names can start with '-' (`secrets.token_urlsafe` makes such keys one time in
64), so every llmserve command treats the word after an option that takes one value as that
value, whatever it starts with, as getopt does. `--api-key=-x7` works too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with option values that may start with '-' (see the module docstring)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None:
            args = attach_option_values(self, list(args))
        return super().parse_known_args(args, namespace)


def _single_value_options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Every option string of the parser whose action takes exactly one value."""
    options: dict[str, str] = {}
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.option_strings and action.nargs is None:
            for option in action.option_strings:
                options[option] = action.option_strings[-1]
    return options


def _resolve(word: str, options: dict[str, str], allow_abbrev: bool) -> str | None:
    """The option `word` names: exact, or the one long option it abbreviates (as argparse)."""
    if word in options:
        return word
    if not allow_abbrev or not word.startswith("--"):
        return None
    matches = [option for option in options if option.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def attach_option_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Join each single-value option with the word after it (`--key`, `-x7` -> `--key=-x7`).

    Stops at `--` and at the first positional word (a subcommand parses its own words).
    """
    options = _single_value_options(parser)
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--" or not word.startswith("-") or word == "-":
            out.extend(argv[index:])
            break
        option = _resolve(word, options, parser.allow_abbrev)
        if option is not None and index + 1 < len(argv):
            value = argv[index + 1]
            out.append(f"{word}={value}" if word.startswith("--") else f"{word}{value}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out
