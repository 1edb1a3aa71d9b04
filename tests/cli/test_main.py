"""The ``zmqpipeline`` parser: a command line builds its own command's parser alone, the
same as in the whole parser (what it then imports: tests/test_startup.py)."""

from __future__ import annotations

import sys

import pytest

import zmqpipeline.cli.main  # noqa: F401  (the module, not the function of that name)

pytestmark = pytest.mark.timeout(60)

cli = sys.modules["zmqpipeline.cli.main"]
args = sys.modules["zmqpipeline.cli.args"]


def _commands(parser):
    (sub,) = (a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_each_command_builds_alone_as_in_the_whole_parser():
    whole = _commands(cli._build_parser())
    core = {"run", "list", "distributor", "collector", "worker", "metadata"}
    assert set(whole) - core == set(args.ADDERS)  # every other module's command is listed
    for name, parser in whole.items():
        alone = _commands(cli._build_parser(name))
        same_module = {n for n, adder in args.ADDERS.items() if adder == args.ADDERS.get(name)}
        assert set(alone) - core <= same_module
        assert alone[name].format_help() == parser.format_help(), name
    assert set(_commands(cli._build_parser("no-such-command"))) == set(whole)
    assert set(_commands(cli._build_parser(None))) == set(whole)


@pytest.mark.parametrize(
    "argv, command",
    [
        (["run", "DIR"], "run"),
        (["--log-level", "INFO", "status", "ipc://x"], "status"),
        (["--log-level=DEBUG", "push", "ipc://x", "T"], "push"),
        (["--version"], None),
        (["-h"], None),
        (["--help", "run"], None),
        ([], None),
    ],
)
def test_the_command_is_the_first_word_past_the_parsers_own_options(argv, command):
    assert args.command_of(argv) == command
