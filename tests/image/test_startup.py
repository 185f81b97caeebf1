"""Expected start-up failures are one line in the words the person used: the flag, the
environment variable, or the make variable under `make serve`."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator

import pytest
from llmserve import cli, startup
from llmserve.startup import StartupError, check_can_listen, naming_for

MESSAGE = (
    "LLMSERVE_MODEL='x' does not exist; LLMSERVE_MODEL_NAME and --model-name are left alone; "
    "LLMSERVE_PORT=1 --port=1"
)


def args(**given: str) -> argparse.Namespace:
    return argparse.Namespace(**{"model": None, "port": None, "host": None, **given})


def test_under_make_the_make_variables_are_named() -> None:
    naming = naming_for(args(model="x", port="1"), {"LLMSERVE_VIA_MAKE": "1"})
    assert naming(MESSAGE) == (
        "MODEL='x' does not exist; LLMSERVE_MODEL_NAME and --model-name are left alone; "
        "PORT=1 PORT=1"
    )


def test_under_make_a_setting_from_the_environment_keeps_its_name() -> None:
    env = {"LLMSERVE_VIA_MAKE": "1", "LLMSERVE_MODEL": "x"}
    naming = naming_for(args(port="1"), env)  # MODEL= was empty, so make passed no --model
    assert naming("LLMSERVE_MODEL='x' does not exist") == "LLMSERVE_MODEL='x' does not exist"
    # ... and with neither, the message about the unset setting names the make variable
    naming = naming_for(args(port="1"), {"LLMSERVE_VIA_MAKE": "1"})
    assert naming("LLMSERVE_MODEL is unset") == "MODEL is unset"


def test_without_make_a_flag_is_named_as_a_flag() -> None:
    naming = naming_for(args(model="x"), {})
    assert naming("LLMSERVE_MODEL='x' does not exist") == "--model='x' does not exist"
    assert naming_for(args(), {})("LLMSERVE_MODEL='x' is bad") == "LLMSERVE_MODEL='x' is bad"


def test_a_message_is_one_line() -> None:
    assert naming_for(args(), {})("a\n  b\r\nc") == "a b c"


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_port_is_refused_by_name(listening: int) -> None:
    with pytest.raises(StartupError, match=rf"LLMSERVE_PORT={listening} is already in use"):
        check_can_listen("127.0.0.1", listening)
    with pytest.raises(StartupError, match="already in use"):
        check_can_listen("0.0.0.0", listening)  # the wildcard overlaps 127.0.0.1


def test_a_free_port_passes_and_stays_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check_can_listen("127.0.0.1", port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the check let go of it


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("no-such-host.invalid", "cannot be resolved"),
        ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1, never local
    ],
)
def test_a_bad_host_is_refused_by_name(host: str, words: str) -> None:
    with pytest.raises(StartupError, match=rf"LLMSERVE_HOST={host!r} {words}"):
        check_can_listen(host, 8080)


def test_a_bad_setting_under_make_names_the_make_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(startup.VIA_MAKE, "1")
    assert cli.main(["serve", "--host", "127.0.0.1", "--port", "80000"]) == 2
    err = capsys.readouterr().err
    assert err == "llmserve: configuration error: PORT=80000 is out of range; allowed: 1..65535\n"
    monkeypatch.delenv(startup.VIA_MAKE)
    assert cli.main(["serve", "--port", "80000"]) == 2
    assert "--port=80000 is out of range" in capsys.readouterr().err
