"""Golden outputs: the README's example commands print byte-identical JSON before and after a refactor.

Each command runs as a user runs it (``python -m symcost.cli`` in a subprocess, from the repository root) with an
empty cache of its own, so the result never depends on what an earlier run left behind.  The files in
``fixtures/golden/`` were written from the code before the structural refactor of issue 13; they are a regression
lock, not an independent check of the numbers (other tests do that).  The only field that may differ between runs is
the wall time ``"seconds"``, which is masked.  Regenerate only for a deliberate change of output:
``python tests/test_golden.py --write``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "fixtures" / "golden"

#: fixture name -> the command's arguments (README examples, small or torchvision models, no network)
COMMANDS: dict[str, list[str]] = {
    "formula_conv2d_bias": ["formula", "conv2d", "--bias", "--json"],
    "formula_batchnorm2d_eval_exact": ["formula", "batchnorm2d", "--mode", "eval", "--convention", "exact", "--json"],
    "eval_conv2d_seed004_mults": ["eval", "conv2d", "--input", "1x1x130x40", "in_channels=1", "out_channels=32",
                                  "kernel_size=4,10", "stride=2,8", "bias=false", "--convention", "mults", "--json"],
    "eval_linear": ["eval", "linear", "--input", "1x128", "in_features=128", "out_features=64", "--json"],
    "model_resnet18_224": ["model", "torchvision:resnet18", "--input", "1x3x224x224", "--json"],
    "model_resnet50_divisible": ["model", "torchvision:resnet50", "--input", "1x3xHxW", "--assume-divisible", "32",
                                 "--json"],
    "model_resnet50_at": ["model", "torchvision:resnet50", "--input", "1x3xRxR", "--at", "R=224,225,193", "--json"],
    "model_user_file": ["model", "tests/fixtures/my_models.py:build_net", "--input", "1x3xHxW", "--json"],
    "model_bert_at": ["model", "hf:bert", "--input", "1xL", "--at", "L=128,512", "--json"],
    "compare_resnet50": ["compare", "torchvision:resnet50", "--input", "1x3x224x224", "--json"],
    "table_resnet18": ["table", "torchvision:resnet18", "--input", "1x3x224x224", "--json"],
    "table_two_models": ["table", "torchvision:resnet18", "torchvision:mobilenet_v2", "--input", "1x3x224x224",
                         "--json"],
    "table_resnet50_depth_symbolic": ["table", "torchvision:resnet50", "--input", "1x3xRxR", "--at", "R=224",
                                      "--depth", "1", "--symbolic", "--json"],
}

_SECONDS = re.compile(r'"seconds": [0-9.e+-]+')


def run(args: list[str]) -> str:
    """The command's stdout with the wall time masked; a nonzero exit fails with its stderr."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SYMCOST_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, "-m", "symcost.cli", *args], check=False, capture_output=True, text=True,
                           cwd=ROOT, env=env)
    assert r.returncode == 0, f"symcost {' '.join(args)} exited {r.returncode}: {r.stderr}"
    return _SECONDS.sub('"seconds": "<masked>"', r.stdout)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_json_output_is_byte_identical(name):
    expected = (GOLDEN / f"{name}.json").read_text()
    actual = run(COMMANDS[name])
    assert actual == expected, f"symcost {' '.join(COMMANDS[name])}: output differs from {GOLDEN / name}.json"


def test_the_mask_hides_only_the_wall_time():
    # a golden file with any other run-dependent field would make the test above flaky or vacuous
    for name in COMMANDS:
        text = (GOLDEN / f"{name}.json").read_text()
        assert "<masked>" not in text.replace('"seconds": "<masked>"', "")
        assert str(ROOT) not in text  # no absolute path of this checkout


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, args in COMMANDS.items():
        (GOLDEN / f"{name}.json").write_text(run(args))
        print(f"wrote {GOLDEN / name}.json")
