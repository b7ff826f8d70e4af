"""A class-per-folder image tree of any image sizes and formats: ``folder/<class>/*`` (the test
split carved out, stratified), or ``folder/train/<class>/*`` with ``folder/val/<class>/*`` as the
test split (as ImageNet's own train/ and val/ are laid out)."""

from pathlib import Path

import numpy as np

from imgclf import splits
from imgclf.decode import IMAGE_SUFFIXES, ResizeSpec
from imgclf.errors import PipelineError
from imgclf.sources.common import FolderFiles, decode_many, write_prepared
from imgclf.sources.tree import scan


def _classes(files: list[str], prefix: str = "") -> dict[str, list[str]]:
    """``<prefix><class>/.../<image>`` -> class -> its images, in name order."""
    classes: dict[str, list[str]] = {}
    for name in files:
        parts = name[len(prefix):].split("/") if name.startswith(prefix) else []
        if len(parts) > 1 and Path(name).suffix.lower() in IMAGE_SUFFIXES:
            classes.setdefault(parts[0], []).append(name)
    return {name: sorted(images) for name, images in sorted(classes.items())}


def prepare(folder: str | Path, out_dir: str | Path, settings: dict, workers: int) -> dict:
    folder = Path(folder)
    files = [name for name, _, _ in scan(folder)]
    has_splits = (folder / "train").is_dir() and (folder / "val").is_dir()
    train_tree = _classes(files, "train/" if has_splits else "")
    if not train_tree:
        raise PipelineError(f"{folder}: no class folders with images")
    classes = splits.select_classes(list(train_tree), settings["n_classes"], settings["class_selection"], settings["class_seed"], settings["wnids"])
    spec = ResizeSpec(settings["image_size"], settings["resize_filter"], settings["jpeg_draft"])
    members = FolderFiles(folder, settings["max_image_bytes"])

    def listing(tree):
        items = [(f, i) for i, c in enumerate(classes) for f in tree.get(c, [])]
        return [f for f, _ in items], np.array([l for _, l in items], np.int32)

    names, labels = listing(train_tree)
    splits.check_classes(labels, classes, str(folder / "train" if has_splits else folder))
    splits.check_carve(labels, settings["val_fraction"], str(folder))
    images = decode_many(members, names, spec, workers)
    if has_splits:
        test_names, test_labels = listing(_classes(files, "val/"))
        splits.check_classes(test_labels, classes, str(folder / "val"))
        test = (decode_many(members, test_names, spec, workers), test_labels)
    else:
        splits.check_carve(labels, settings["test_fraction"], str(folder))
        (images, labels), test = splits.carve(images, labels, settings["test_fraction"], settings["split_seed"])
    train_split, val_split = splits.carve(images, labels, settings["val_fraction"], settings["split_seed"])
    return write_prepared(out_dir, {"train": train_split, "val": val_split, "test": test}, classes, classes, settings)
