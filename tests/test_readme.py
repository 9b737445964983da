"""The README's two set-up commands stay true: CI runs the test one verbatim, the main one names real commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def two_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands():
    commands = two_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = two_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci, "the last line of .ci/run must be the README's test command"
    assert "pytest" in test_command


def test_main_command_uses_existing_subcommands():
    from symcost.cli import build_parser

    main = two_commands()[0]
    names = set(build_parser()._subparsers._group_actions[0].choices)
    used = re.findall(r"symcost (\w+)", main)
    assert used and set(used) <= names, used
