"""Expected start-up failures (bad model, busy port, bad settings): one line, no traceback, in the
words the person used to start the server.

Messages name settings by their environment variable (LLMSERVE_MODEL=...). `Naming` rewrites
those names once, here, into how the value was actually given: the flag (--model) when it came
on the command line, or the make variable (MODEL=) under `make serve`, whose recipe sets
LLMSERVE_VIA_MAKE=1 and passes MODEL, PORT and HOST as flags.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from llmserve.settings import Settings

log = logging.getLogger("llmserve.startup")

VIA_MAKE = "LLMSERVE_VIA_MAKE"
# (Settings field, flag, environment variable, make variable)
MAKE_VARIABLES = (
    ("model", "--model", "LLMSERVE_MODEL", "MODEL"),
    ("port", "--port", "LLMSERVE_PORT", "PORT"),
    ("host", "--host", "LLMSERVE_HOST", "HOST"),
)


class StartupError(Exception):
    """A failure the person starting the server can fix; its message says how."""


def checked(settings: Settings, report: Callable[[str], None]) -> Settings:
    """The settings with LLMSERVE_MODEL resolved to what load_model takes (a hub id fetched
    into the cache), once the address, the model and a requested GPU are known to be usable."""
    check_can_listen(settings.host, settings.port)
    from llmserve import model_source  # the hub client: only for serve

    try:
        source = model_source.resolve(settings.model, report)
    except model_source.ModelSourceError as err:
        raise StartupError(str(err)) from None
    if settings.device == "cuda":
        from llmserve.models import ModelLoadError, pick_device  # torch

        try:
            pick_device(settings.device)
        except ModelLoadError as err:
            raise StartupError(str(err)) from None
    return dataclasses.replace(
        settings, model=source.spec, model_name=settings.model_name or source.served_name
    )


@dataclass(frozen=True)
class Naming:
    """Which name each setting had where the person set it (old name -> new name)."""

    renames: dict[str, str] = field(default_factory=dict)

    def __call__(self, message: str) -> str:
        for old, new in self.renames.items():
            message = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", new, message)
        return " ".join(message.split())  # one line, whatever the library put in it


def naming_for(args: Any, env: Mapping[str, str]) -> Naming:
    """`args` holds the flags as given (None where absent), as cli.py's parser leaves them."""
    via_make = env.get(VIA_MAKE) == "1"
    renames: dict[str, str] = {}
    for setting, flag, env_name, make_name in MAKE_VARIABLES:
        given = getattr(args, setting, None) is not None
        if via_make and (given or env_name not in env):
            renames[flag] = renames[env_name] = make_name
        elif given:
            renames[env_name] = flag
    return Naming(renames)


def check_can_listen(host: str, port: int) -> None:
    """Bind (and let go of) the address uvicorn will listen on, before a model is loaded or
    downloaded for nothing: uvicorn itself finds out only once the model has started loading,
    and says no more than the errno."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise StartupError(
            f"LLMSERVE_HOST={host!r} cannot be resolved ({err.strerror}); allowed: an address "
            "of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all"
        ) from None
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                raise StartupError(_explain_bind(host, port, err)) from None


def _explain_bind(host: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            f"LLMSERVE_PORT={port} is already in use on {host} (another server, perhaps an "
            "earlier llmserve, listens there); allowed: a free port, or stop that server"
        )
    if err.errno == errno.EACCES:
        return f"LLMSERVE_PORT={port} needs privileges to listen on; allowed: 1024..65535"
    if err.errno == errno.EADDRNOTAVAIL:
        return (
            f"LLMSERVE_HOST={host!r} is not an address of this machine; allowed: one of its "
            "addresses, e.g. 127.0.0.1, or 0.0.0.0 for all"
        )
    return f"cannot listen on LLMSERVE_HOST={host!r} LLMSERVE_PORT={port}: {err.strerror}"


def print_error(message: str, naming: Naming) -> None:
    """Before logging is configured (settings errors): a plain line on stderr."""
    print(f"llmserve: configuration error: {naming(message)}", file=sys.stderr)


def log_error(message: str, naming: Naming) -> None:
    """After logging is configured: one record, in the chosen format (JSON in the cluster)."""
    log.error("%s", naming(message))


def stop_at_once(message: str) -> NoReturn:
    """Ctrl-C during a hub download: end now, without the traceback and without waiting for
    download threads that cannot be cancelled (their partial files are dropped next time)."""
    log.warning("%s", message)
    logging.shutdown()
    os._exit(130)  # 128 + SIGINT, as a shell reports it
