"""Option values that start with '-' (keys, tokens, names) on every llmserve command line."""

from __future__ import annotations

import pytest
from llmserve import cli, fetch, loadgen
from llmserve.cliargs import attach_option_values

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_loadgen_takes_dash_values_for_every_option() -> None:
    cfg = loadgen.parse_config(
        ["--api-key", "-k", "--model", "--odd-name", "--seed", "-3", "--temperature", "0"]
    )
    assert cfg.api_key == "-k" and cfg.model == "--odd-name" and cfg.seed == -3


def test_fetch_takes_dash_values() -> None:
    args = fetch.build_parser().parse_args(
        [
            "--repo-id",
            "acme/model",
            "--revision",
            SHA,
            "--dest",
            "-models",
            "--token-file",
            "-token",
        ]
    )
    assert args.dest == "-models" and args.token_file == "-token"


def test_serve_subcommand_takes_dash_values() -> None:
    args = cli.build_parser().parse_args(["serve", "--api-key-file", "-key", "--model", "-m"])
    assert args.command == "serve" and args.api_key_file == "-key" and args.model == "-m"


def test_flags_and_separators_are_left_alone() -> None:
    parser = loadgen.build_parser()
    argv = ["--ignore-eos", "--api-key", "-x", "--", "--api-key", "y"]
    assert attach_option_values(parser, argv) == [
        "--ignore-eos",
        "--api-key=-x",
        "--",
        "--api-key",
        "y",
    ]


def test_a_missing_value_is_still_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        loadgen.parse_config(["--api-key"])
    assert "--api-key: expected one argument" in capsys.readouterr().err


def test_ambiguous_abbreviation_is_not_guessed() -> None:
    parser = loadgen.build_parser()
    # --prompt-tokens and nothing else starts with --prompt; --output- too; "--t" is ambiguous
    # (--temperature, --timeout): left for argparse to refuse by name.
    assert attach_option_values(parser, ["--t", "-1"]) == ["--t", "-1"]
