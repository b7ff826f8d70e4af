"""Source layouts, one module each, and how a prepared data set picks one.

``LAYOUTS`` maps a layout's name to its module under ``imgclf.sources``; each module has
``prepare(path, out_dir, data, workers)`` writing one prepared directory atomically."""

from __future__ import annotations

import importlib

LAYOUTS = {"tiny_imagenet_zip": "tiny_imagenet", "cifar10_binary": "cifar10", "folder": "folder"}


def layout_of(dataset: str, data: dict) -> str:
    """The layout the prepare stage of ``dataset`` reads: CIFAR-10's binary tarball, an image
    folder where ``data.imagenet200.image_folder`` names one, else the Tiny ImageNet zip."""
    if dataset == "cifar10":
        return "cifar10_binary"
    if dataset == "imagenet200" and data["imagenet200"]["image_folder"]:
        return "folder"
    return "tiny_imagenet_zip"


def module(layout: str):
    return importlib.import_module(f"imgclf.sources.{LAYOUTS[layout]}")


def module_file(layout: str) -> str:
    """The layout's module, relative to the package (the prepare stage's code dependency)."""
    return f"sources/{LAYOUTS[layout]}.py"
