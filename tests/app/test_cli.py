"""``spot <command> --help``: every command says what it does and shows a worked example that this parser accepts."""
import argparse
import shlex

import pytest

from spot.app.cli import build_parser, examples

EXAMPLES = examples()


def _commands(parser, path=()):
    """(path, parser) of every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))


def test_every_command_has_an_example_and_every_example_a_command():
    assert set(COMMANDS) == set(EXAMPLES)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_a_description_and_a_parsable_example(command, capsys):
    text = COMMANDS[command].format_help()
    assert COMMANDS[command].description and "example:" in text and EXAMPLES[command] in text
    args = build_parser().parse_args(shlex.split(EXAMPLES[command])[1:])  # argparse exits on a bad example
    assert callable(args.func)


def test_the_required_config_is_shown_as_required():
    text = COMMANDS["evaluate"].format_help()
    assert "configuration (required: --config, --config-json, or both)" in text
