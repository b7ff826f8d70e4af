"""The data the training benchmarks share: a generated 10-class Tiny ImageNet-layout archive
(667 training and 20 validation images per class), prepared at params.yaml's settings."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare_ten_classes(tmp: Path) -> Path:
    """Write the archive under ``tmp`` and prepare it into ``tmp / "data"``; return that directory."""
    from imgclf import config, datasets, sample
    from imgclf.sources import tiny_imagenet

    sample.make_tiny_imagenet(tmp / "t.zip", seed=7, classes=10, train_per_class=667, val_per_class=20, test_images=0)
    data_params = config.load(ROOT / "params.yaml")["data"]
    data_params["imagenet200"]["n_classes"] = 10
    tiny_imagenet.prepare(tmp / "t.zip", tmp / "data", datasets.settings("imagenet200", data_params), 2)
    return tmp / "data"
