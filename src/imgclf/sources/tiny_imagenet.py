"""The Tiny ImageNet layout (cs231n's zip): ``wnids.txt``, ``words.txt``,
``train/<wnid>/images/*.JPEG`` and ``val/images/*`` labelled by ``val/val_annotations.txt`` (the
test split; the archive's own test/ has no labels). The class subset is drawn from ``wnids.txt``;
the validation split is carved from train/, stratified."""

import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf import splits
from imgclf.decode import ResizeSpec
from imgclf.errors import PipelineError
from imgclf.sources.common import READ_ERRORS, decode_many, open_zip, safe_member, write_prepared
from imgclf.sources.zipread import ZipMembers


@dataclass
class TinyIndex:
    wnids: list[str]
    words: dict[str, str]
    train: list[tuple[str, str]]  # (member, wnid)
    val: list[tuple[str, str]]


def read_tiny_index(archive) -> TinyIndex:
    """Parse wnids.txt, words.txt, train/<wnid>/images/ and val/val_annotations.txt of the zip."""
    members = archive if hasattr(archive, "entries") else open_zip(archive)
    archive_path = members.path
    names = members.names()
    for name in names:
        safe_member(name, archive_path)
    roots = [name[: -len("wnids.txt")] for name in names if posixpath.basename(name) == "wnids.txt"]
    if not roots:
        raise PipelineError(f"{archive_path}: wnids.txt missing: not a Tiny ImageNet archive")
    root = min(roots, key=len)

    def text(member: str) -> str:
        try:
            return members.read(root + member).decode("utf-8")
        except KeyError:
            raise PipelineError(f"{archive_path}: {root}{member} missing") from None
        except READ_ERRORS + (UnicodeDecodeError,) as exc:
            raise PipelineError(f"{archive_path}: {root}{member}: corrupt ({exc})") from None

    wnids = [line.strip() for line in text("wnids.txt").splitlines() if line.strip()]
    lines = text("words.txt").splitlines() if root + "words.txt" in members.entries else []
    words = {key.strip(): value.strip() for key, _, value in (line.partition("\t") for line in lines)}
    wanted = set(wnids)
    train = []
    for name in names:
        parts = name[len(root):].split("/")
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and parts[3]:
            if parts[1] not in wanted:
                raise PipelineError(f"{archive_path}: {name}: class {parts[1]} not in wnids.txt")
            train.append((name, parts[1]))
    val = []
    for number, line in enumerate(text("val/val_annotations.txt").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in wanted:
            raise PipelineError(f"{archive_path}: val/val_annotations.txt line {number}: bad entry {line[:60]!r}")
        member = f"{root}val/images/{fields[0]}"
        if member not in members.entries:
            raise PipelineError(f"{archive_path}: {member} listed in val_annotations.txt but missing")
        val.append((member, fields[1]))
    if not train:
        raise PipelineError(f"{archive_path}: no train/<wnid>/images/ files")
    return TinyIndex(wnids, words, sorted(train), sorted(val))


def prepare(archive: str | Path, out_dir: str | Path, settings: dict, workers: int, reader=ZipMembers) -> dict:
    """``reader``: how zip members are read (``bench/bench_prepare.py`` swaps in ``zipfile``)."""
    members = open_zip(archive, settings["max_image_bytes"], reader)
    index = read_tiny_index(members)
    classes = splits.select_classes(index.wnids, settings["n_classes"], settings["class_selection"], settings["class_seed"], settings["wnids"])
    label_of = {w: i for i, w in enumerate(classes)}
    spec = ResizeSpec(settings["image_size"], settings["resize_filter"], settings["jpeg_draft"])
    train = [(m, label_of[w]) for m, w in index.train if w in label_of]
    test = [(m, label_of[w]) for m, w in index.val if w in label_of]
    train_labels = np.array([label for _, label in train], np.int32)
    splits.check_classes(train_labels, classes, f"{archive}: train/")
    splits.check_classes(np.array([label for _, label in test], np.int32), classes, f"{archive}: val/ (the test split)")
    splits.check_carve(train_labels, settings["val_fraction"], "train/")
    # The carve needs only labels: decode straight into train | val | test order, so each split
    # is a view of one array and nothing is copied after decoding.
    kept, held = splits.stratified_split(train_labels, settings["val_fraction"], settings["split_seed"])
    order = [train[i] for i in kept] + [train[i] for i in held] + test
    images = decode_many(members, [m for m, _ in order], spec, workers)
    labels = np.array([label for _, label in order], np.int32)
    a, b = len(kept), len(kept) + len(held)
    parts = {"train": (images[:a], labels[:a]), "val": (images[a:b], labels[a:b]), "test": (images[b:], labels[b:])}
    return write_prepared(out_dir, parts, classes, [index.words.get(w, w) for w in classes], settings)
