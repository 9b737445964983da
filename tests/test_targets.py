"""load_target: torchvision names and file:callable specs, every mistake one UsageError line."""
import pytest
from torch import nn

from symcost.parse import UsageError
from symcost.targets import load_target


def test_torchvision_target_is_built_without_weights():
    model = load_target("torchvision:resnet18")
    assert isinstance(model, nn.Module) and model.training  # nothing done to it: no eval(), no copy


def write(tmp_path, body: str) -> str:
    path = tmp_path / "net.py"
    path.write_text("import torch.nn as nn\nfrom helper import WIDTH\n" + body)
    (tmp_path / "helper.py").write_text("WIDTH = 4\n")  # sibling imports work while the file runs
    return str(path)


def test_file_target_factory_class_and_instance(tmp_path):
    path = write(tmp_path, "def build():\n    return nn.Linear(WIDTH, 2)\n"
                           "Net = nn.Identity\nmodel = nn.Conv2d(1, WIDTH, 3)\n")
    assert isinstance(load_target(f"{path}:build"), nn.Linear)
    assert isinstance(load_target(f"{path}:Net"), nn.Identity)
    assert isinstance(load_target(f"{path}:model"), nn.Conv2d)


@pytest.mark.parametrize("body, attr, message", [
    ("def build():\n    raise RuntimeError('no GPU here')\n", "build", "build() raised RuntimeError: no GPU here"),
    ("def build():\n    return 3\n", "build", "build() returned a int, not an nn.Module"),
    ("def build():\n    return nn.Linear(1, 1)\n", "biuld", "has no attribute 'biuld'; did you mean build?"),
    ("SIZE = 3\n", "SIZE", "SIZE is a int, not an nn.Module or a callable"),
    ("import sys\nsys.exit(1)\n\n\ndef build():\n    pass\n", "build", "failed: SystemExit: 1"),
    ("def build(:\n", "build", "failed: SyntaxError"),
])
def test_file_target_errors(tmp_path, body, attr, message):
    path = write(tmp_path, body)
    with pytest.raises(UsageError, match=None) as e:
        load_target(f"{path}:{attr}")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("spec, message", [
    ("torchvision:resnet_50", "unknown torchvision model 'resnet_50'; did you mean resnet50"),
    ("torchvision:", "expected torchvision:NAME"),
    ("resnet50", "expected torchvision:NAME"),
    ("keras:resnet50", "unknown source 'keras'"),
    ("nowhere/net.py:build", "target file 'nowhere/net.py' not found"),
])
def test_bad_specs(spec, message):
    with pytest.raises(UsageError) as e:
        load_target(spec)
    assert message in str(e.value)


def test_a_target_is_parsed_once_into_its_kind_and_name():
    from symcost.targets import Target, is_file_target

    cases = {"hf:llama:causal-lm": ("hf", "llama:causal-lm"), " torchvision:resnet50 ": ("torchvision", "resnet50"),
             "timm:resnet50d": ("timm", "resnet50d"), "models/net.py:build": ("file", "build"),
             "resnet50": ("", "resnet50")}
    for spec, (kind, name) in cases.items():
        t = Target.of(spec)
        assert (t.kind, t.name, t.spec) == (kind, name, spec.strip())
        assert Target.of(t) is t
        assert is_file_target(spec) == (kind == "file")  # a head's colon does not make hf:llama:causal-lm a file
    assert Target.of("hf:bert").input_dtype == "int64" and Target.of("torchvision:vgg11").input_dtype == "float32"


def test_only_a_hugging_face_target_retries_with_eager_attention():
    import pytest

    from symcost.errors import NeedsTensorValues
    from symcost.targets import Target

    tried = []

    def attempt(attn):  # the default attention reads mask values, as sdpa's does on meta tensors
        tried.append(attn)
        if attn is None:
            raise NeedsTensorValues("the mask's values")
        return "traced"

    result, error = Target.of("hf:bart").with_eager_retry(attempt)
    assert (result, tried, str(error)) == ("traced", [None, "eager"], "the mask's values")
    tried.clear()
    with pytest.raises(NeedsTensorValues):
        Target.of("torchvision:resnet18").with_eager_retry(attempt)
    assert tried == [None]
    assert Target.of("hf:bert").with_eager_retry(lambda attn: attn) == (None, None)  # no retry when none is needed
