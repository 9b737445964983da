"""Regenerate the committed figures: ``python -m symcost.figures [--out DIR]`` (default ``figures/``).

* ``cost_vs_resolution.png``: MACs against the input size R (1x3xRxR, R = 32 … 1024) for several torchvision
  classifiers, each the model's closed-form total evaluated over all sizes at once, the weights' own input size
  marked.
* ``resnet50_breakdown.png``: resnet50's FLOPs and memory traffic (reads + writes) by layer family against R.
* ``macs_vs_traffic.png``: MACs against memory traffic (reads + writes at fp32) at 224x224 for more models, with
  lines of constant arithmetic intensity.

One symbolic derivation per model (``symcost.derive.derive``, cached on disk); no counter runs per size.
The files carry no timestamps or version strings, so a rerun with the same torch/torchvision gives the same bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: file name -> (width, height) in pixels
FIGURES = {
    "cost_vs_resolution.png": (960, 600),
    "resnet50_breakdown.png": (1440, 576),
    "macs_vs_traffic.png": (960, 660),
}
RESOLUTION_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "efficientnet_b3", "densenet121",
                     "vgg16")
TRAFFIC_MODELS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
                  "efficientnet_b3", "densenet121", "vgg16", "convnext_tiny", "regnet_y_1_6gf", "squeezenet1_1",
                  "shufflenet_v2_x1_0")
#: labels that would overlap a neighbour's: (dx, dy, alignment) in points
LABEL_PLACES = {"convnext_tiny": (-6, 4, "right")}
INPUT = "1x3xRxR"
SIZES = range(32, 1025, 16)
TRAFFIC_SIZE = 224
BYTES_PER_ELEMENT = 4   # fp32
CONVENTION = "flops"


def _derive(name: str):
    from .derive import derive

    return derive(f"torchvision:{name}", INPUT, progress=False)


def cost_vs_resolution(out: Path) -> list[str]:
    from . import plot

    models = [(name, _derive(name)) for name in RESOLUTION_MODELS]
    defaults = {name: plot.default_size(f"torchvision:{name}") for name in RESOLUTION_MODELS}
    fig, ax = plot.figure("MACs vs input size (input 1×3×R×R)",
                          figsize=(8.0, 5.0))
    notes = plot.draw_models(ax, models, "R", list(SIZES), "macs", CONVENTION, logy=True, defaults=defaults,
                             shape_text="1×3×R×R")
    fig.tight_layout()
    plot.save(fig, out)
    return notes


def resnet50_breakdown(out: Path) -> list[str]:
    from . import plot

    mc = _derive("resnet50")
    default = plot.default_size("torchvision:resnet50")
    fig, (left, right) = plot.figure("resnet50 by layer family (input 1×3×R×R)", figsize=(12.0, 4.8), ncols=2)
    notes = plot.draw_breakdown(left, "resnet50", mc, "R", list(SIZES), "flops", CONVENTION, default=default)
    left.set_title(f"FLOPs [{CONVENTION}]", fontsize=10)
    notes += plot.draw_breakdown(right, "resnet50", mc, "R", list(SIZES), "reads", CONVENTION, default=default,
                                 metrics=("reads", "writes"))
    right.set_title("memory traffic: reads + writes (each tensor once per call)", fontsize=10)
    fig.tight_layout()
    plot.save(fig, out)
    return notes


def macs_vs_traffic(out: Path) -> list[str]:
    from . import plot

    points = []
    for name in TRAFFIC_MODELS:
        v = _derive(name).evaluate({"R": TRAFFIC_SIZE}, CONVENTION)
        traffic_mb = (v["reads"] + v["writes"]) * BYTES_PER_ELEMENT / 1e6
        points.append((name, traffic_mb, v["macs"] / 1e9, LABEL_PLACES.get(name, (6, 3, "left"))))
    plot.plot_scatter(points, out, xlabel="memory traffic: reads + writes (MB at fp32)", ylabel="MACs (G)",
                      title=f"MACs vs memory traffic at {TRAFFIC_SIZE}×{TRAFFIC_SIZE} (batch 1)",
                      lines=(1, 10, 100), line_scale=1e-3, line_unit="MAC/byte", figsize=(8.0, 5.5),
                      footnote="traffic counts every input, weight, buffer and output tensor once per layer call "
                               "(an ideal cache); dashed: constant MACs per byte")
    return []


MAKERS = {
    "cost_vs_resolution.png": cost_vs_resolution,
    "resnet50_breakdown.png": resnet50_breakdown,
    "macs_vs_traffic.png": macs_vs_traffic,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symcost.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="figures", metavar="DIR", help="folder for the PNGs (default figures/)")
    parser.add_argument("--only", action="append", choices=sorted(MAKERS), metavar="NAME",
                        help="make only this figure (repeatable); default all")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or MAKERS:
        path = out / name
        for note in MAKERS[name](path):
            print(f"note: {note}", file=sys.stderr)
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
