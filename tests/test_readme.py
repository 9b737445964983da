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


def test_the_add_a_layer_op_convention_device_block_runs_as_written(tmp_path):
    """The README's extension block, run as it stands in a process of its own (it registers a layer and an op for
    good), prints what its comments derive."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text.split("## Adding a layer, an op, a convention, a device", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.+?)```", section, flags=re.S)[0]
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    n = 8 * 16 * 32 * 32   # 131072 elements: 2 mul, 2 add, 1 fn each; the gradient's 1 div each
    assert lines[0] == f"{{'mul': {2 * n}, 'add': {2 * n}, 'fn': {n}}} {n}"
    # per output position and channel: 27 MACs x 2 + 1 bias add = 55 for the conv, 5 for squareplus; 8 channels
    assert lines[1] == f"{{}} {8 * 60}*(H - 2)*(W - 2)"
    # sqrt-heavy: 27 x 2 = 54 for the conv, 10 for squareplus's sqrt
    assert lines[2] == f"{8 * 64}*(H - 2)*(W - 2)"
    # memory-bound: read and write 64*8*222*222 fp32 elements at 2e12 bytes/s
    assert abs(float(lines[3]) - 2 * 64 * 8 * 222 * 222 * 4 / 2e12) < 1e-15
    assert (tmp_path / "my-gpu.json").is_file()
