"""How well does the per-kind time model fit the H100 ResNet-50 data, and how well does it predict what it was not
fitted to?  Prints Markdown for bench/RESULTS.md.

    .venv/bin/python bench/latency_h100_fit.py

Data: tests/fixtures/h100 (a copy of the shared H100 calibration: per-layer times of ResNet-50 at fp32 batch 1,
fp32 batch 64 and fp16 batch 64; whole-forward times unfolded and BN-folded; profiler totals of the bias-add
kernels).  Fits (``symcost.timing.fit.h100_device``):

* all three regimes: the ``h100-sxm`` preset (its per-layer scores are a fit check, in-sample);
* leave one regime out: fit on two, score on the third;
* leave layers out: fit on the stem, layer1 and layer2 of every regime, score on layer3, layer4 and fc.

Scores: Spearman's rank correlation of predicted vs measured per-layer times (the naive roofline
``max(FLOPs / datasheet peak, bytes / datasheet bandwidth)`` beside it), the ratio of the predicted to the measured
sum of layers, the whole forward (two-clock overlap) against the measured ones (the layer file's own
``<whole model>`` row, timed by the same harness in the same session, and ``resnet50_e2e.csv``), and folding's
saving against the e2e file's.
No GPU runs here: every measured number is from the files.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIMES = ("fp32 b1", "fp32 b64", "fp16 b64")


def traces():
    """(regime -> (unfolded rows, folded rows)) of ResNet-50 on the meta device."""
    import torch
    from torchvision.models import resnet50

    from symcost.fold import fold_batchnorm
    from symcost.tracing import trace

    torch.manual_seed(0)
    model = resnet50(weights=None).eval()
    folded = fold_batchnorm(model, (1, 3, 64, 64)).model.to("meta")
    model = model.to("meta")
    return {b: (trace(model, (b, 3, 224, 224)), trace(folded, (b, 3, 224, 224))) for b in (1, 64)}


def score(device, samples, regime, naive, tr, measured_e2e, whole):
    from symcost.timing import estimate, forward_time, predict, spearman

    rows = [s for s in samples if s.regime == regime]
    meas = [s.seconds for s in rows]
    pred = [estimate(s.cost, device, s.dtype, args=s.args).time_s for s in rows]
    plain = [estimate(s.cost, naive, s.dtype, args=s.args, overhead=False).time_s for s in rows]
    dtype, batch = regime.split()
    before, after = tr[int(batch[1:])]
    fb = forward_time(predict(before, device, dtype)).seconds
    fa = forward_time(predict(after, device, dtype)).seconds
    mb, ma = measured_e2e[(regime, "unfolded")], measured_e2e[(regime, "folded")]
    return (f"{spearman(pred, meas):.3f} | {spearman(plain, meas):.3f} | {sum(pred) / sum(meas):.2f} | "
            f"{fb * 1e3:.2f} / {whole[regime] * 1e3:.2f} / {mb * 1e3:.2f} | "
            f"{100 * (1 - fa / fb):.1f} / {100 * (1 - ma / mb):.1f}")


def main() -> int:
    from symcost.timing import PRESETS
    from symcost.timing.fit import e2e_seconds, h100_device, h100_samples, whole_model_seconds

    samples = h100_samples()
    naive = PRESETS["h100-sxm-datasheet"]
    tr, measured, whole = traces(), e2e_seconds(), whole_model_seconds()
    print("| fitted on | scored on | Spearman | naive Spearman | sum pred / meas | forward ms pred / layer file / "
          "e2e file | fold saving % pred / meas |")
    print("|:--|:--|--:|--:|--:|--:|--:|")
    full = h100_device(samples)
    for r in REGIMES:
        print(f"| all three (the preset; in-sample) | {r} | {score(full, samples, r, naive, tr, measured, whole)} |")
    for held in REGIMES:
        dev = h100_device(samples, tuple(r for r in REGIMES if r != held))
        print(f"| {', '.join(r for r in REGIMES if r != held)} | **{held}** (held out) | "
              f"{score(dev, samples, held, naive, tr, measured, whole)} |")
    def is_late(name):
        return name.startswith(("layer3", "layer4", "fc", "avgpool"))

    late = [s for s in samples if is_late(s.name)]
    dev = h100_device(samples, names=lambda n: not is_late(n))
    for r in REGIMES:
        print(f"| stem, layer1, layer2 | **layer3, layer4, head**, {r} | "
              f"{score(dev, late, r, naive, tr, measured, whole)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
