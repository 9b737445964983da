"""Small things a user trips on (issue 14): each run as a user would, `python -m symcost.cli ...` in a subprocess,
checking the exit code and that a refusal is one line on stderr with no traceback."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def symcost(*argv, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SYMCOST_DEBUG", None)
    cmd = [sys.executable, "-c", code, *argv] if code else [sys.executable, "-m", "symcost.cli", *argv]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def refused(*argv) -> str:
    """``symcost ARGV`` must exit 2 with one line on stderr, nothing on stdout; the line is returned."""
    r = symcost(*argv)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return r.stderr


def test_version():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = symcost("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"symcost {version}", r


def test_top_level_help_names_every_target_kind():
    r = symcost("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps the epilog
    for kind in ("torchvision:NAME", "hf:MODEL_TYPE", "file.py:callable"):
        assert kind in text, kind
    from symcost.targets import TARGET_SYNTAX  # timm:NAME too where targets.py takes it

    assert " ".join(TARGET_SYNTAX.split()) in text


def test_formula_explains_the_bias_flag_symbol():
    r = symcost("formula", "conv2d")
    assert r.returncode == 0 and "C_out*b" in r.stdout  # bias left symbolic: params C_in*C_out*K_h*K_w/g + C_out*b
    assert "b = 1 with bias, 0 without" in r.stdout.splitlines()
    r = symcost("formula", "conv2d", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["flags"] == {"b": "1 with bias, 0 without"}
    r = symcost("formula", "linear", "--no-bias")  # no b in the formulas: no line about it
    assert r.returncode == 0 and "*b" not in r.stdout and "b = 1" not in r.stdout


@pytest.mark.parametrize("convention", ["fvcore", "macs", "flops"])
def test_check_refuses_a_convention_it_would_not_use(convention):
    err = refused("check", "conv2d", "in_channels=3", "out_channels=8", "kernel_size=3", "--input", "1x3x9x9",
                  "--convention", convention)
    assert "'torch' convention" in err and f"--convention {convention}" in err


def test_check_accepts_the_torch_convention_it_uses():
    r = symcost("check", "conv2d", "in_channels=3", "out_channels=8", "kernel_size=3", "--input", "1x3x9x9",
                "--convention", "torch")
    # 8 channels x 7x7 outputs x 27 MACs = 10584 MACs, 2 FLOPs each = 21168, bias adds not counted by torch
    assert r.returncode == 0 and "21,168" in r.stdout, r


def test_readme_says_the_pinned_torch_is_the_cuda_build_and_how_to_get_the_cpu_one():
    text = " ".join((ROOT / "README.md").read_text().split())
    setup = text.split("## Two commands", 1)[1].split(" ## ", 1)[0]
    assert "CUDA build" in setup and "GB installed" in setup
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup
    assert "pip install torch==2.14.1 torchvision==0.29.1 --index-url" in setup  # the same pins as the two commands


@pytest.mark.parametrize("argv, expected", [
    (("formula", "conv2d", "in_chanels=3"), "unknown argument 'in_chanels' (did you mean in_channels?)"),
    (("eval", "conv2d", "--input", "1x3x8x8", "--in-chanels", "3", "out_channels=3", "kernel_size=3"),
     "unknown option '--in-chanels' (did you mean --in-channels?)"),
    (("formula", "linear", "--no-bais"), "unknown option '--no-bais' (did you mean --no-bias?)"),
    (("formula", "conv2d", "--jsn"), "unknown option '--jsn' (did you mean --json?)"),  # the command's own option
    (("formula", "conv2d", "--convention", "fvcor"), "unknown convention 'fvcor' (did you mean fvcore?)"),
    (("list", "--jsn"), "unrecognized arguments: --jsn (did you mean --json?)"),
    (("model", "torchvision:resnet18", "--input", "1x3x32x32", "--asume-divisible", "32"),
     "(did you mean --assume-divisible?)"),
    (("modl", "torchvision:resnet18"), "unknown command 'modl' (did you mean model?)"),
    (("model", "hf:bret", "--input", "1x8"), "unknown Hugging Face model type 'bret'; did you mean bert"),
])
def test_did_you_mean(argv, expected):
    assert expected in refused(*argv)


def test_no_suggestion_when_nothing_is_close():
    err = refused("formula", "conv2d", "colour=3")
    assert "did you mean" not in err and "it takes: in_channels, out_channels" in err


def test_the_library_suggests_argument_names_too():
    from symcost import layer
    from symcost.errors import LayerError

    with pytest.raises(LayerError, match=r"unknown argument 'in_chanels' \(did you mean in_channels\?\)"):
        layer("conv2d", in_chanels=3)


def _stderr_on_a_terminal(*argv) -> tuple[int, str]:
    """Run ``symcost ARGV`` with stderr on a pseudo-terminal (where progress shows); its exit code and stderr."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "symcost.cli", *argv], stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.stdout.read()
    os.close(leader)
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace")


CHECK = ("check", "conv2d", "in_channels=3", "out_channels=8", "kernel_size=3", "--input", "1x3x9x9")


def test_progress_shows_on_a_terminal_and_quiet_turns_it_off():
    rc, err = _stderr_on_a_terminal(*CHECK)
    assert rc == 0 and "FlopCounterMode" in err  # the spinner: "running torch's torch.nn.Conv2d under ..."
    rc, err = _stderr_on_a_terminal(*CHECK, "--quiet")
    assert rc == 0 and err == "", err
    rc, err = _stderr_on_a_terminal(*CHECK, "-q")
    assert rc == 0 and err == "", err


def test_progress_is_off_when_stderr_is_not_a_terminal():
    r = symcost(*CHECK)
    assert r.returncode == 0 and r.stderr == ""


@pytest.mark.parametrize("command", ["check", "model", "compare", "table", "plot", "fold", "calibrate", "latency",
                                     "mfu", "report"])
def test_every_command_that_shows_progress_takes_quiet(command):
    from symcost.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    assert "--quiet" in {o for a in sub._actions for o in a.option_strings}


def test_quiet_is_not_offered_where_there_is_nothing_to_silence():
    r = symcost("formula", "conv2d", "--quiet")
    assert r.returncode == 2 and "unknown option '--quiet'" in r.stderr


RUN_AND_REPORT_TORCH = """
import sys
from symcost.cli import main
rc = main(sys.argv[1:])
print("torch imported" if "torch" in sys.modules else "no torch", file=sys.stderr)
sys.exit(rc)
"""


@pytest.mark.parametrize("argv", [
    ("--input", "1x3x64x64", "--markdown"),
    ("--input", "1x3x64x64", "--csv", "--depth", "1"),  # grouped rows need the module types: cached too
    ("--input", "1x3xRxR", "--at", "R=65", "--symbolic"),
])
def test_a_cached_table_answers_without_importing_torch(tmp_path, monkeypatch, argv):
    monkeypatch.setenv("SYMCOST_CACHE_DIR", str(tmp_path))
    command = ("table", "torchvision:resnet18", *argv, "--quiet")
    first = symcost(*command, code=RUN_AND_REPORT_TORCH)
    assert first.returncode == 0 and first.stderr.splitlines()[-1] == "torch imported", first.stderr  # traced
    second = symcost(*command, code=RUN_AND_REPORT_TORCH)
    assert second.returncode == 0 and second.stderr.splitlines()[-1] == "no torch", second.stderr
    assert second.stdout == first.stdout and "layer1" in second.stdout  # the same table as the traced run


def test_fasterrcnn_names_the_op_that_cannot_run_on_meta_tensors():
    err = refused("model", "torchvision:fasterrcnn_resnet50_fpn", "--input", "1x3x224x224", "--no-cache")
    assert "the model calls torch.nonzero()" in err and "cannot run on meta tensors" in err
    assert "torchvision/ops/boxes.py:" in err  # where the detection post-processing calls it
    assert "cannot run on input" not in err  # the input shape is not to blame


DATA_DEPENDENT = '''
import torch


class Net(torch.nn.Module):
    def __init__(self, how):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.how = how

    def forward(self, x):
        y = self.fc(x)
        if self.how == "item":
            return y * y.sum().item()
        if self.how == "masked_select":
            return torch.masked_select(y, y > 0)
        if self.how == "repeat_interleave":
            return torch.repeat_interleave(y.long().flatten())
        return y


def item():
    return Net("item")


def masked_select():
    return Net("masked_select")


def repeat_interleave():
    return Net("repeat_interleave")


def plain():
    return Net("plain")
'''


@pytest.mark.parametrize("fn, op", [("item", "Tensor.item()"), ("masked_select", "aten::masked_select"),
                                    ("repeat_interleave", "repeat_interleave")])
def test_a_data_dependent_op_in_a_users_model_is_named_with_its_line(tmp_path, fn, op):
    path = tmp_path / "net.py"
    path.write_text(DATA_DEPENDENT)
    err = refused("model", f"{path}:{fn}", "--input", "2x4", "--no-cache")
    assert f"the model calls {op} (called at {path}:" in err and "in forward)" in err
    assert "cannot run on meta tensors" in err and "cannot run on input" not in err


def test_a_shape_the_model_cannot_take_is_still_blamed_on_the_input(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(DATA_DEPENDENT)
    err = refused("model", f"{path}:plain", "--input", "2x5", "--no-cache")  # Linear(4, 4) given 5 features
    assert "the model cannot run on input 2x5" in err and "meta tensors" not in err
