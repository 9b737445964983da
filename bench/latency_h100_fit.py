"""How well does the per-kind time model fit the H100 data, and how well does it predict what it was not fitted to?
Prints Markdown for bench/RESULTS.md.

    .venv/bin/python bench/latency_h100_fit.py

Data: tests/fixtures/h100 (a copy of the shared H100 calibration): per-layer times of ResNet-50 and MobileNetV2 at
fp32 batch 1, fp32 batch 64 and fp16 batch 64; whole-forward times unfolded and BN-folded at fp32 and fp16, batch 1
and 64; profiler totals of ResNet-50's bias-add kernels.  Fits (``symcost.timing.fit.h100_device``):

* both models, all three regimes: the ``h100-sxm`` preset (its per-layer scores are a fit check, in-sample);
* one model only, scored on the other (out-of-sample: the other model's layers, forwards and folds never seen)
  and on itself (in-sample);
* both models, leaving one regime out, scored on the regime left out.

Scores: Spearman's rank correlation of predicted vs measured per-layer times (the naive roofline
``max(FLOPs / datasheet peak, bytes / datasheet bandwidth)`` beside it), the ratio of the predicted to the measured
sum of layers, the whole forward (two-clock overlap) against the measured ones (the layer file's own
``<whole model>`` row, timed by the same harness in the same session, and ``*_e2e.csv``), and folding's saving
against the e2e file's.  fp16 batch 1 has whole forwards only (no per-layer file).
No GPU runs here: every measured number is from the files.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REGIMES = ("fp32 b1", "fp32 b64", "fp16 b64")
FORWARD_ONLY = ("fp16 b1",)
MODELS = ("resnet50", "mobilenet_v2")


def traces():
    """(model -> batch -> (unfolded rows, folded rows)) on the meta device."""
    import torch
    import torchvision.models as tv

    from symcost.fold import fold_batchnorm
    from symcost.tracing import trace

    out = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = getattr(tv, name)(weights=None).eval()
        folded = fold_batchnorm(model, (1, 3, 64, 64)).model.to("meta")
        model = model.to("meta")
        out[name] = {b: (trace(model, (b, 3, 224, 224)), trace(folded, (b, 3, 224, 224))) for b in (1, 64)}
    return out


def score(device, samples, model, regime, naive, tr) -> str:
    from symcost.timing import estimate, forward_time, predict, spearman
    from symcost.timing.fit import e2e_seconds, whole_model_seconds

    rows = [s for s in samples if s.model == model and s.regime == regime]
    dtype, batch = regime.split()
    before, after = tr[model][int(batch[1:])]
    fb = forward_time(predict(before, device, dtype)).seconds
    fa = forward_time(predict(after, device, dtype)).seconds
    e2e, whole = e2e_seconds(model=model), whole_model_seconds(model=model)
    mb, ma = e2e[(regime, "unfolded")], e2e[(regime, "folded")]
    layer_file = f"{whole[regime] * 1e3:.2f}" if regime in whole else "—"
    if rows:
        meas = [s.seconds for s in rows]
        pred = [estimate(s.cost, device, s.dtype, args=s.args).time_s for s in rows]
        plain = [estimate(s.cost, naive, s.dtype, args=s.args, overhead=False).time_s for s in rows]
        layers = f"{spearman(pred, meas):.3f} | {spearman(plain, meas):.3f} | {sum(pred) / sum(meas):.2f}"
    else:
        layers = "— | — | —"
    return (f"{layers} | {fb * 1e3:.2f} / {layer_file} / {mb * 1e3:.2f} | "
            f"{100 * (1 - fa / fb):.1f} / {100 * (1 - ma / mb):.1f}")


def main() -> int:
    from symcost.timing import PRESETS
    from symcost.timing.fit import h100_device, h100_samples

    samples = h100_samples()
    naive = PRESETS["h100-sxm-datasheet"]
    tr = traces()
    print("| model | fitted on | scored on | Spearman | naive Spearman | sum pred / meas | forward ms pred / layer file / "
          "e2e file | fold saving % pred / meas |")
    print("|:--|:--|:--|--:|--:|--:|--:|--:|")
    both = h100_device(samples)
    for model in MODELS:
        for r in REGIMES + FORWARD_ONLY:
            print(f"| {model} | both models (the preset; in-sample) | {r} | "
                  f"{score(both, samples, model, r, naive, tr)} |")
    for fitted in MODELS:
        dev = h100_device(samples, models=(fitted,))
        for model in sorted(MODELS, key=lambda m: m == fitted):     # the held-out model first
            where = "in-sample" if model == fitted else "**held out**"
            for r in REGIMES + FORWARD_ONLY:
                print(f"| {model} ({where}) | {fitted} only | {r} | {score(dev, samples, model, r, naive, tr)} |")
    for held in REGIMES:
        dev = h100_device(samples, tuple(r for r in REGIMES if r != held))
        for model in MODELS:
            print(f"| {model} | both, {', '.join(r for r in REGIMES if r != held)} | **{held}** (held out) | "
                  f"{score(dev, samples, model, held, naive, tr)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
