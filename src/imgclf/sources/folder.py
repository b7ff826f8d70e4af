"""A class-per-folder image tree of any image sizes and formats: ``folder/<class>/*`` (the test
split carved out, stratified), or ``folder/train/<class>/*`` with ``folder/val/<class>/*`` as the
test split (as ImageNet's own train/ and val/ are laid out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf import splits
from imgclf.decode import IMAGE_SUFFIXES, ResizeSpec
from imgclf.errors import PipelineError
from imgclf.sources.common import FolderFiles, decode_many, write_prepared


def _folder_classes(root: Path) -> dict[str, list[str]]:
    classes = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            str(f.relative_to(root.parent)) for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
        )
        if files:
            classes[class_dir.name] = files
    return classes


def prepare(folder: str | Path, out_dir: str | Path, settings: dict, workers: int) -> dict:
    """A class-per-folder tree of any image sizes: ``folder/<class>/*`` (test carved out), or
    ``folder/train/<class>/*`` with ``folder/val/<class>/*`` as the test split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: image folder not found")
    has_splits = (folder / "train").is_dir() and (folder / "val").is_dir()
    train_tree = _folder_classes(folder / "train" if has_splits else folder)
    if not train_tree:
        raise PipelineError(f"{folder}: no class folders with images")
    classes = splits.select_classes(list(train_tree), settings["n_classes"], settings["class_selection"], settings["class_seed"], settings["wnids"])
    spec = ResizeSpec(settings["image_size"], settings["resize_filter"], settings["jpeg_draft"])
    files = FolderFiles((folder / "train").parent if has_splits else folder.parent, settings["max_image_bytes"])

    def listing(tree):
        items = [(f, i) for i, c in enumerate(classes) for f in tree.get(c, [])]
        return [f for f, _ in items], np.array([l for _, l in items], np.int32)

    names, labels = listing(train_tree)
    splits.check_classes(labels, classes, str(folder / "train" if has_splits else folder))
    splits.check_carve(labels, settings["val_fraction"], str(folder))
    images = decode_many(files, names, spec, workers)
    if has_splits:
        test_names, test_labels = listing(_folder_classes(folder / "val"))
        splits.check_classes(test_labels, classes, str(folder / "val"))
        test = (decode_many(files, test_names, spec, workers), test_labels)
    else:
        splits.check_carve(labels, settings["test_fraction"], str(folder))
        (images, labels), test = splits.carve(images, labels, settings["test_fraction"], settings["split_seed"])
    train_split, val_split = splits.carve(images, labels, settings["val_fraction"], settings["split_seed"])
    meta = {"source": "image_folder", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": len(classes)}
    write_prepared(out_dir, {"train": train_split, "val": val_split, "test": test}, classes, classes, meta)
    return meta
