"""The CIFAR-10 binary layout (Toronto's tarball): ``data_batch_1..5.bin`` and ``test_batch.bin``
of 3,073-byte records (label, then 32x32 planes R, G, B) and ``batches.meta.txt``; no pickle."""

import posixpath
import tarfile
from pathlib import Path

import numpy as np

from imgclf import splits
from imgclf.decode import ResizeSpec, resize_array
from imgclf.errors import PipelineError
from imgclf.sources.common import keep_classes, safe_member, write_prepared

RECORD = 1 + 32 * 32 * 3


def parse_cifar_batch(data: bytes, name: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> (uint8 N x 32 x 32 x 3, int32 labels)."""
    if not data or len(data) % RECORD:
        raise PipelineError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise PipelineError(f"{name}: label {labels.max()} out of range 0..9")
    return np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def read_cifar_archive(archive: str | Path) -> dict[str, bytes]:
    wanted = {f"data_batch_{i}.bin" for i in range(1, 6)} | {"test_batch.bin", "batches.meta.txt"}
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                safe_member(member.name, str(archive))
                base = posixpath.basename(member.name)
                if member.isfile() and base in wanted:
                    found[base] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise PipelineError(f"{archive}: archive not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PipelineError(f"{archive}: not a valid CIFAR-10 tarball ({exc})") from None
    if missing := sorted(wanted - set(found)):
        raise PipelineError(f"{archive}: missing {', '.join(missing)}: not the CIFAR-10 binary version")
    return found


def prepare(archive: str | Path, out_dir: str | Path, settings: dict, workers: int = 1) -> dict:
    """``workers`` unused: the records need no decoding."""
    members = read_cifar_archive(archive)
    parts = [parse_cifar_batch(members[f"data_batch_{i}.bin"], f"{archive}: data_batch_{i}.bin") for i in range(1, 6)]
    images, labels = (np.concatenate(column) for column in zip(*parts))
    test_images, test_labels = parse_cifar_batch(members["test_batch.bin"], f"{archive}: test_batch.bin")
    classes = [line.strip() for line in members["batches.meta.txt"].decode().splitlines() if line.strip()]
    if len(classes) != 10:
        raise PipelineError(f"{archive}: batches.meta.txt lists {len(classes)} classes, expected 10")
    kept = splits.select_in_order(classes, settings)
    if kept != classes:  # a class subset: the others' images dropped, labels renumbered in order
        images, labels = keep_classes(images, labels, classes, kept)
        test_images, test_labels = keep_classes(test_images, test_labels, classes, kept)
        classes = kept
    spec = ResizeSpec(settings["image_size"], settings["resize_filter"], False)
    splits.check_classes(labels, classes, f"{archive}: data batches")
    splits.check_classes(test_labels, classes, f"{archive}: test_batch.bin")
    splits.check_carve(labels, settings["val_fraction"], "data batches")
    train_split, val_split = splits.carve(resize_array(images, spec), labels, settings["val_fraction"], settings["split_seed"])
    parts = {"train": train_split, "val": val_split, "test": (resize_array(test_images, spec), test_labels)}
    return write_prepared(out_dir, parts, classes, classes, settings)
