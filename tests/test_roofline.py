"""The roofline model (symcost/roofline.py), `symcost calibrate`, `symcost latency`, `symcost fold`'s cost
before/after, and the seed-001 answer (derivations/seed001_batchnorm_time.py).

Timing on this project's machines is noisy (two CPUs shared with other jobs): no test asserts anything about a
measured time beyond "it is there and positive"; orderings are asserted on the prediction side only, and the
measurements are printed (``pytest -s`` shows them).
"""
import json
import math
import sys
from pathlib import Path

import pytest
import sympy

import symcost
from symcost import CONVENTIONS
from symcost.cli import main
from symcost.roofline import (
    PRESETS,
    Device,
    LayerEstimate,
    estimate,
    get_device,
    intensity,
    itemsize,
    layer_bytes,
    predict,
    rankdata,
    roofline_time,
    spearman,
    total_time,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # derivations/ is not part of the installed package
    sys.path.insert(0, str(ROOT))

from derivations import seed001_batchnorm_time as seed001  # noqa: E402

FLOPS = CONVENTIONS["flops"]


def conv_cost():
    """Conv2d(3, 32, 3, padding=1) with bias on 1x3x32x32: the seed-001 convolution."""
    return symcost.layer("conv2d", symbolic=False, in_channels=3, out_channels=32, kernel_size=3, padding=1,
                         bias=True).cost((1, 3, 32, 32))


def bn_cost():
    return symcost.layer("batchnorm2d", symbolic=False, num_features=32, mode="eval").cost((1, 32, 32, 32))


# ------------------------------------------------------------------------------------------------ bytes

def test_dtype_sizes():
    assert [itemsize(d) for d in ("fp32", "float32", "fp16", "bfloat16", "bf16", "int8", "fp64")] == [4, 4, 2, 2, 2,
                                                                                                      1, 8]
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        itemsize("fp8")


def test_conv_bytes_by_hand():
    # reads: input 3*32*32 = 3072, weight 32*3*3*3 = 864, bias 32 -> 3968 elements; writes 32*32*32 = 32768
    assert layer_bytes(conv_cost(), "fp32") == (3968 * 4, 32768 * 4) == (15872, 131072)
    assert layer_bytes(conv_cost(), "fp16") == (3968 * 2, 32768 * 2) == (7936, 65536)
    assert layer_bytes(conv_cost(), "int8") == (3968, 32768)


def test_batchnorm_bytes_by_hand():
    # eval BN reads x (32*32*32 = 32768) and mean, var, gamma, beta (4*32 = 128); writes 32768:
    # fp32 (32768 + 128 + 32768) * 4 = 262656 bytes; fp16 half of it
    read, written = layer_bytes(bn_cost(), "fp32")
    assert (read, written) == ((32768 + 128) * 4, 32768 * 4) == (131584, 131072)
    assert read + written == 262656
    assert sum(layer_bytes(bn_cost(), "fp16")) == (32768 + 128 + 32768) * 2 == 131328
    assert sum(layer_bytes(bn_cost(), "bf16")) == 131328


def test_intensity_by_hand():
    # BN: a multiply and an add per element, 2*32768 = 65536 FLOPs over 262656 bytes = 0.2495 FLOP/B
    bn = estimate(bn_cost(), PRESETS["laptop-cpu"], "fp32")
    assert bn.flops == 65536 and bn.bytes == 262656
    assert bn.intensity == pytest.approx(65536 / 262656) == pytest.approx(0.24951, abs=1e-5)
    # conv: 2*27 per output + 1 bias add = 55 * 32768 = 1802240 FLOPs over 15872 + 131072 = 146944 bytes = 12.26
    conv = estimate(conv_cost(), PRESETS["laptop-cpu"], "fp32")
    assert conv.flops == 1802240 and conv.bytes == 146944
    assert conv.intensity == pytest.approx(12.2649, abs=1e-4)
    # fp16 halves the bytes: doubles the intensity
    assert estimate(bn_cost(), PRESETS["laptop-cpu"], "fp16").intensity == pytest.approx(2 * bn.intensity)
    assert intensity(10, 0) == math.inf and intensity(0, 0) == 0.0


def test_roofline_is_the_max_of_compute_and_memory_plus_overhead():
    d = Device("toy", peak_flops=100.0, bandwidth=10.0, overhead_s=2.0, source="made up")
    assert roofline_time(1000, 50, d, overhead=False) == max(1000 / 100, 50 / 10) == 10.0   # compute-bound
    assert roofline_time(100, 500, d, overhead=False) == max(100 / 100, 500 / 10) == 50.0   # memory-bound
    assert roofline_time(100, 500, d) == 52.0                                                # + overhead
    assert d.ridge() == 10.0
    est = LayerEstimate("x", "relu", "activation", 100, 250, 250, 1.0, 50.0, 2.0)
    assert est.time_s == 52.0 and est.bound == "memory"
    assert LayerEstimate("x", "", "", 1000, 25, 25, 10.0, 5.0, 2.0).bound == "compute"
    assert LayerEstimate("x", "", "", 1, 1, 1, 0.01, 0.1, 2.0).bound == "overhead"


def test_preset_peaks_per_dtype():
    h100, a100 = get_device("h100-sxm-datasheet"), get_device("a100")
    assert h100.name == "h100-sxm-datasheet" and h100.peak("fp32") == 66.9e12 and h100.peak("fp16") == 989.4e12
    assert h100.bandwidth == 3.35e12 and a100.bandwidth == 2.039e12 and a100.peak("bf16") == 312e12
    # the fitted H100's roofs are the measured ones of tests/fixtures/h100/calib.json (TFLOP/s, GB/s)
    fitted = get_device("h100")
    assert (fitted.peak("fp32"), fitted.peak("tf32"), fitted.peak("fp16")) == (51.1e12, 375.6e12, 737.3e12)
    assert fitted.bandwidth == 2927.3e9 and fitted.asynchronous and fitted.tf32_conv and not fitted.tf32_matmul
    assert get_device("laptop-cpu").peak("fp16") == 384e9          # no figure of its own: the fp32 peak
    assert all(d.source for d in PRESETS.values())
    # BN (0.25 FLOP/B) is memory-bound on every preset: the ridge is far above it
    for d in PRESETS.values():
        assert estimate(bn_cost(), d, "fp32", overhead=False).bound == "memory"


# -------------------------------------------------------------------------------------------- device JSON

def test_device_json_roundtrip(tmp_path):
    d = Device("box", peak_flops=1.5e11, bandwidth=2e10, overhead_s=4e-6, source="test",
               peak_flops_by_dtype={"bfloat16": 3e11}, details={"regime": {"threads": 2}})
    path = tmp_path / "box.json"
    d.save(path)
    back = Device.load(path)
    assert back == d and back.peak("bf16") == 3e11
    assert get_device(str(path)) == d
    for p in PRESETS.values():
        assert Device.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "peak_flops": 1e9}, "lacks bandwidth"),
    ({"name": "x", "peak_flops": 1e9, "bandwidth": -1}, "bandwidth must be a positive number"),
    ({"name": "x", "peak_flops": "fast", "bandwidth": 1e9}, "peak_flops must be a number"),
    ({"name": "x", "peak_flops": 1e9, "bandwidth": 1e9, "speed": 3}, "unknown key(s) speed"),
    ({"name": "x", "peak_flops": 1e9, "bandwidth": 1e9, "overhead_s": -1}, "overhead_s must be a number >= 0"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_device_descriptions(data, message):
    with pytest.raises(ValueError) as e:
        Device.from_dict(data)
    assert message in str(e.value)


# -------------------------------------------------------------------------------------------- rank correlation

def test_spearman():
    assert rankdata([10, 30, 20, 20]) == [1.0, 4.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # y ranks 1, 2, 3.5, 5, 3.5 against 1..5: r = 8 / sqrt(10 * 9.5) = 0.820783 (scipy.stats.spearmanr agrees)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [5, 5, 5]) is None and spearman([1], [2]) is None


# ---------------------------------------------------------------------------------------------- commands

def test_calibrate_quick_writes_a_valid_device_file(tmp_path, capsys):
    out = tmp_path / "dev.json"
    assert main(["calibrate", "--quick", "--threads", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "regime: CPU" in text and "1 thread," in text and f"wrote {out}" in text
    d = Device.load(out)
    assert d.peak_flops > 0 and d.bandwidth > 0 and d.overhead_s > 0
    assert d.details["regime"]["threads"] == 1 and d.details["quick"] is True
    assert d.details["gemm"]["n"] == 256
    print(f"\ncalibrate --quick: {d.peak_flops / 1e9:.1f} GFLOP/s, {d.bandwidth / 1e9:.1f} GB/s, "
          f"{d.overhead_s * 1e6:.1f} us per call")


def test_calibrate_json(tmp_path, capsys):
    assert main(["calibrate", "--quick", "--out", str(tmp_path / "d.json"), "--json", "--repeats", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written_to"] == str(tmp_path / "d.json") and data["details"]["repeats"] == 2
    assert Device.from_dict({k: v for k, v in data.items() if k != "written_to"}) == Device.load(tmp_path / "d.json")


NET = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.proj = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)) + self.proj(x))     # a functional add between modules
        y = self.relu(y)                                       # the same module twice
        return self.fc(torch.flatten(y, 1))

def plain():
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
"""


@pytest.fixture
def net(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    return str(tmp_path / "net.py")


def test_latency_json_on_a_tiny_model(net, capsys):
    assert main(["latency", f"{net}:Net", "--input", "2x3x8x8", "--device", "laptop-cpu", "--repeats", "3",
                 "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in data["layers"]]
    assert names == ["conv", "bn", "proj", "(model): add", "relu", "relu", "fc"]
    for r in data["layers"]:
        assert r["measured_s"] is not None and r["measured_s"] > 0
        assert r["predicted_s"] == pytest.approx(max(r["compute_s"], r["memory_s"]) + r["overhead_s"])
        assert r["bytes"] == r["bytes_read"] + r["bytes_written"]
    bn = data["layers"][1]
    # BN on 2x8x8x8: reads 1024 + 4*8, writes 1024, fp32 -> (1024 + 32 + 1024) * 4 = 8320 bytes; 2 * 1024 FLOPs
    assert (bn["bytes"], bn["flops"]) == (8320, 2048)
    assert data["n_compared"] == 7 and -1 <= data["spearman"] <= 1
    assert data["total"]["predicted_s"] == pytest.approx(sum(r["predicted_s"] for r in data["layers"]))
    assert data["total"]["measured_forward_s"] > 0 and data["regime"]["threads"] == 1
    assert data["regime"]["summary"].startswith("CPU") and data["dtype"] == "fp32"
    assert sum(data["share_by_family"]["bytes"].values()) == pytest.approx(1.0)
    print("\nlatency (tiny model):", {r["name"]: f"{r['measured_s'] * 1e6:.1f} us" for r in data["layers"]},
          "spearman", data["spearman"])


def test_latency_text_and_prediction_only(net, capsys):
    assert main(["latency", f"{net}:Net", "--input", "1x3x8x8", "--device", "h100", "--dtype", "fp16",
                 "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "predicted on  h100-sxm" in out and "(model): add" in out and "Spearman" not in out
    assert main(["latency", f"{net}:Net", "--input", "1x3x8x8", "--device", "h100", "--dtype", "int8",
                 "--no-measure", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spearman"] is None and all(r["measured_s"] is None for r in data["layers"])
    # int8: one byte per element; BN on 1x8x8x8 reads 512 + 4*8 and writes 512 elements
    bn = data["layers"][1]
    assert bn["bytes"] == 512 + 32 + 512


def test_latency_calibrates_by_default(net, capsys):
    assert main(["latency", f"{net}:Net", "--input", "1x3x8x8", "--quick", "--repeats", "2", "--threads", "1",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"]["name"].startswith("this machine") and data["device"]["details"]["quick"] is True


def test_fold_json_reports_cost_before_and_after(net, capsys):
    assert main(["fold", f"{net}:plain", "--input", "1x3x8x8", "--json", "--device", "laptop-cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    before, after, saved = data["cost"]["before"], data["cost"]["after"], data["cost"]["saved"]
    # conv 3->4, 3x3, no bias: 108 weights; BN 4 gamma + 4 beta, 4 mean + 4 var buffers; folded conv gains a bias
    assert (before["params"], before["buffers"]) == (108 + 8, 8)
    assert (after["params"], after["buffers"]) == (108 + 4, 0)
    # BN on 4x6x6 = 144 elements: 2 * 144 FLOPs, removed; the folded conv adds its bias: 144 bias adds
    assert before["macs"] == after["macs"] == 4 * 6 * 6 * 27
    assert after["flops"] < before["flops"] and saved["flops"] == 2 * 144 - 144
    # reads: BN's 144 + 4*4 go, the bias's 4 come: 156; writes: BN's 144
    assert (saved["reads"], saved["writes"]) == (144 + 16 - 4, 144)
    assert data["cost"]["convention"] == "flops" and data["cost"]["units"]["reads"] == "elements"
    p = data["cost"]["predicted"]
    assert p["device"] == "laptop-cpu" and p["after_s"] < p["before_s"] and 0 < p["saving"] < 1


def test_fold_json_torchvision_cost(capsys):
    assert main(["fold", "torchvision:resnet18", "--input", "1x3x32x32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    c = data["cost"]
    assert data["n_folded"] == 20 and c["before"]["macs"] == c["after"]["macs"]
    assert c["after"]["flops"] < c["before"]["flops"] and c["after"]["buffers"] == 0
    # each of resnet18's 20 BNs has 2C params and 2C running statistics; 9600 of each in total (sum of 2C)
    assert c["saved"]["buffers"] == c["before"]["buffers"] == 9600
    assert c["saved"]["params"] == 9600 - 4800   # BN's gamma and beta go, a bias of C per conv comes


def test_fold_text_has_the_cost_table(net, capsys):
    assert main(["fold", f"{net}:plain", "--input", "1x3x8x8"]) == 0
    out = capsys.readouterr().out
    assert "traced cost" in out and "FLOPs[flops]" in out and "reads (elements)" in out


@pytest.mark.parametrize("argv, message", [
    (["latency", "NET:Net", "--input", "1x3x8x8", "--dtype", "fp8"], "unknown dtype 'fp8'"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--device", "tpu"], "unknown device 'tpu'"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--device", "missing.json"], "device file 'missing.json' not found"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--device", "h100", "--calibrate"], "either --device or --calibrate"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--repeats", "0"], "--repeats must be a positive integer"),
    (["latency", "NET:Net", "--input", "1x3xHxW"], "size 'H' is not an integer"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--dtype", "int8"], "add --no-measure"),
    (["latency", "NET:Net", "--input", "1x4x8x8", "--device", "h100"], "cannot run on input 1x4x8x8"),
    (["latency", "NET:Net", "--input", "1x3x8x8", "--convention", "nope"], "unknown convention 'nope'"),
    (["calibrate", "--repeats", "0"], "--repeats must be a positive integer"),
    (["fold", "NET:plain", "--input", "1x3x8x8", "--device", "tpu"], "unknown device 'tpu'"),
    (["fold", "NET:plain", "--input", "1x3x8x8", "--dtype", "fp7"], "unknown dtype 'fp7'"),
])
def test_bad_inputs_exit_2_with_one_line(argv, message, net, capsys):
    argv = [a.replace("NET", net) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bad_device_file_is_one_line(tmp_path, net, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["latency", f"{net}:Net", "--input", "1x3x8x8", "--device", str(bad), "--no-measure"]) == 2
    err = capsys.readouterr().err
    assert "is not JSON" in err and err.count("\n") == 1
    bad.write_text(json.dumps({"name": "x", "peak_flops": 1e9, "bandwidth": 0}))
    assert main(["latency", f"{net}:Net", "--input", "1x3x8x8", "--device", str(bad), "--no-measure"]) == 2
    assert "bandwidth must be a positive number" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- seed 001

def test_seed001_bn_share_of_bytes_far_above_its_share_of_flops():
    for n in (1, 32):
        mc = seed001.traced(True, n)
        rows = {r.name: r.cost for r in mc.rows}
        bn = rows["2"]
        total = mc.total(FLOPS)
        # BN: 2 FLOPs per element, 65536 N of 4718635 N in all = 1.39 % at any batch
        flop_share = FLOPS.count(bn) / total["flops"]
        assert flop_share == sympy.Rational(65536, 4718635)
        # bytes: BN moves 65536 N + 128 of 199723 N + 1410091 elements (the constant: every weight read once)
        byte_share = (bn.reads + bn.writes) / (total["reads"] + total["writes"])
        assert byte_share == sympy.Rational(65536 * n + 128, 199723 * n + 1410091)
        assert byte_share > 2.9 * flop_share            # N = 1: 4.08 % against 1.39 %
        if n == 32:
            assert byte_share > 19 * flop_share         # N = 32: 26.9 % against 1.39 %
    # at N = 1, fp32: (32768 + 128 + 32768) * 4 = 262656 bytes
    assert sum(layer_bytes(seed001.traced(True, 1).rows[2].cost, "fp32")) == 262656


@pytest.mark.parametrize("device", list(PRESETS))
def test_seed001_predicted_time_with_bn_exceeds_without(device):
    d = PRESETS[device]
    for n in (1, 32):
        with_bn = predict(seed001.traced(True, n), d, "fp32")
        without = predict(seed001.traced(False, n), d, "fp32")
        assert total_time(with_bn) > total_time(without)
        pure_with = total_time(predict(seed001.traced(True, n), d, "fp32", overhead=False))
        assert pure_with > total_time(predict(seed001.traced(False, n), d, "fp32", overhead=False))
        bn = next(e for e in with_bn if e.name == "2")
        assert bn.memory_s > bn.compute_s                              # memory-bound, whatever the overhead
        assert bn.time_s / total_time(with_bn) > 65536 / 4718635       # time share above the FLOP share


def test_seed001_page():
    md = seed001.derive()
    assert "262{,}656" in md and "131,328" in md                       # BN bytes at N = 1: fp32, fp16
    # bytes share at N = 32: (65536*32 + 128) / (199723*32 + 1410091) = 2097280 / 7801227 = 26.88 %, 19x 1.39 %
    assert "| 32 | 1.39 | 26.88 | 19× |" in md
    # N = 1: (65536 + 128) / (199723 + 1410091) = 65664 / 1609814 = 4.08 %, 2.9x the FLOP share
    assert "| 1 | 1.39 | 4.08 | 3× |" in md
    assert "199723 N + 1410091" in md and "134187 N + 1409963" in md


def test_seed001_measurement_runs_and_is_printed():
    m = seed001.measure(repeats=3, batches=(1,), keep_memory=False)   # no process-wide mallopt in pytest
    r = m[1]["median"]
    assert r["forward_with_s"] > 0 and r["forward_without_s"] > 0 and r["bn_s"] > 0
    assert set(r["per_layer_s"]) == {"0", "1", "2", "3", "4"}
    print("\n" + seed001.report(m))
