"""`llmserve serve|fetch|bench`. fetch and bench live in their own modules and are imported only
when asked for, so serving never pays for (or breaks on) their dependencies."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence

from llmserve import cliargs, logs, startup
from llmserve.settings import SettingsError, add_serve_arguments, load_settings

_LAZY_COMMANDS = {"fetch": "llmserve.fetch", "bench": "llmserve.loadgen"}


def build_parser() -> cliargs.ArgumentParser:
    parser = cliargs.ArgumentParser(prog="llmserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the OpenAI-compatible server")
    add_serve_arguments(serve_parser)
    for name in _LAZY_COMMANDS:
        commands.add_parser(name, help=f"see `llmserve {name} --help`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _LAZY_COMMANDS:
        module = importlib.import_module(_LAZY_COMMANDS[argv[0]])
        return int(module.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    naming = startup.naming_for(args, os.environ)
    try:
        settings = load_settings(args)
    except SettingsError as err:
        startup.print_error(str(err), naming)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:  # before torch loads, so a busy port or a mistyped MODEL is told at once
        settings = startup.checked(settings, report=logging.getLogger("llmserve.progress").info)
    except startup.StartupError as err:
        startup.log_error(str(err), naming)
        return 1
    except KeyboardInterrupt:
        startup.stop_at_once(
            "interrupted before the server started; the files downloaded so far are kept"
        )
    from llmserve.server import serve  # torch and transformers load only for `serve`

    return serve(settings)
