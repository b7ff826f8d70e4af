"""The data set registry: which layouts each data set reads, and one module per layout.

A source (params: ``data.sources.<name>``) is an archive or folder in one of ``LAYOUTS``; each
data set (``data.<dataset>.source``) names the source it is prepared from. Each layout's module
has ``prepare(path, out_dir, data, workers)`` writing one prepared directory atomically."""

from __future__ import annotations

import importlib

# layout -> module under imgclf.sources
LAYOUTS = {"tiny_imagenet_zip": "tiny_imagenet", "cifar10_binary": "cifar10", "folder": "folder"}
LAYOUT_TEXT = {
    "tiny_imagenet_zip": "a zip laid out as Tiny ImageNet (tiny-imagenet-200/wnids.txt, words.txt, "
                         "train/<wnid>/images/*.JPEG, val/images + val/val_annotations.txt)",
    "cifar10_binary": "CIFAR-10's binary tarball (cifar-10-batches-bin/data_batch_1..5.bin, test_batch.bin)",
    "folder": "a class-per-folder image tree: <class>/*.jpg, or train/<class>/ and val/<class>/",
}
ARCHIVE_SUFFIX = {"tiny_imagenet_zip": ".zip", "cifar10_binary": ".tar.gz"}
# data set -> the layouts it can be prepared from
DATASETS = {"imagenet200": ("tiny_imagenet_zip", "folder"), "cifar10": ("cifar10_binary",)}


def source_of(dataset: str, data: dict) -> tuple[str, dict]:
    """The name and entry of the source ``dataset`` is prepared from (``data``: params' data section)."""
    name = data[dataset]["source"]
    return name, data["sources"][name]


def layout_of(dataset: str, data: dict) -> str:
    return source_of(dataset, data)[1]["layout"]


def module(layout: str):
    return importlib.import_module(f"imgclf.sources.{LAYOUTS[layout]}")


def module_file(layout: str) -> str:
    """The layout's module, relative to the package (the prepare stage's code dependency)."""
    return f"sources/{LAYOUTS[layout]}.py"
