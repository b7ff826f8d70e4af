"""What every source layout shares: reading members from an archive or a folder, decoding them
in parallel into one array, path checks, and writing the prepared directory atomically."""

import json
import mmap
import os
import posixpath
import stat
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from imgclf import arrays
from imgclf.decode import ResizeSpec, decode_resize, trailing_bytes, what_is_wrong
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir
from imgclf.parallel import fork_map
from imgclf.sources.zipread import MemberTooLarge, ZipMembers

CHUNK = 512  # images per task of the parallel decode
READ_ERRORS = (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


class FolderFiles:
    """Members of a folder, read as files by their path relative to it."""

    def __init__(self, path: str | Path, max_member_bytes: int):
        self.path, self.max_member_bytes = str(path), max_member_bytes

    def read(self, name: str) -> bytes:
        """The file's bytes, read only from a regular file (never blocking on a FIFO) and never
        more than ``max_member_bytes`` of them, whatever its size claims to be."""
        fd = os.open(Path(self.path, name), os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            data = handle.read(self.max_member_bytes + 1)
        if len(data) > self.max_member_bytes:
            raise MemberTooLarge(f"more than data.max_image_bytes ({self.max_member_bytes:,})")
        return data


def open_zip(archive_path: str | Path, max_member_bytes: int | None = None, reader=ZipMembers):
    try:
        return reader(archive_path, max_member_bytes)
    except FileNotFoundError:
        raise PipelineError(f"{archive_path}: archive not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        raise PipelineError(f"{archive_path}: not a valid zip archive ({exc})") from None


def safe_member(name: str, archive: str) -> None:
    if name.startswith(("/", "\\")) or posixpath.normpath(name).startswith("..") or ":" in name.split("/")[0]:
        raise PipelineError(f"{archive}: unsafe path in archive: {name!r}")


def decode_many(members, names: list[str], spec: ResizeSpec, workers: int) -> np.ndarray:
    """Decode ``names`` from ``members`` (an open zip or ``FolderFiles``) in order, in chunks over
    ``workers`` forked processes writing into one shared array."""
    ranges = [(i, min(i + CHUNK, len(names))) for i in range(0, len(names), CHUNK)]
    parallel = workers > 1 and len(ranges) > 1
    shape = (len(names), spec.size, spec.size, 3)
    if parallel:  # anonymous shared memory: what forked workers write, the parent sees
        out = np.frombuffer(mmap.mmap(-1, int(np.prod(shape))), np.uint8).reshape(shape)
    else:
        out = np.empty(shape, np.uint8)

    def decode_range(bounds: tuple[int, int]) -> list[tuple[int, int]]:
        # (index, bytes) of JPEGs with data after their end-of-image marker: decoders ignore it
        trailing = []
        for i in range(*bounds):
            try:
                data = members.read(names[i])
            except READ_ERRORS as exc:
                raise PipelineError(f"{members.path}: {names[i]}: cannot read ({exc})") from None
            try:
                decode_resize(data, spec, out[i])
            except Exception as exc:  # PIL raises many types for broken images
                raise PipelineError(f"{members.path}: {names[i]}: unreadable image ({what_is_wrong(data, exc)})") from None
            if extra := trailing_bytes(data):
                trailing.append((i, extra))
        return trailing

    trailing = [item for part in fork_map(decode_range, ranges, workers if parallel else 1) for item in part]
    if trailing:
        index, extra = max(trailing, key=lambda item: item[1])
        print(f"warning: {members.path}: {len(trailing):,} JPEG(s) carry data after the end-of-image marker "
              f"(ignored; each image stays under data.max_image_bytes); the most: {names[index]}, {extra:,} bytes",
              file=sys.stderr)
    return out


def write_prepared(out_dir: str | Path, parts: dict, classes: list[str], words: list[str], settings: dict) -> dict:
    """Write the prepared directory atomically; return its meta (source, resize, classes, images per split)."""
    meta = {key: settings[key] for key in ("source", "image_size", "resize_filter")} | {"n_classes": len(classes)}
    with atomic_dir(out_dir) as tmp:
        for split in arrays.SPLITS:
            images, labels = parts[split]
            arrays.save_split(tmp / f"{split}.npz", images, labels)
            meta[f"{split}_images"] = int(len(labels))
        arrays.write_classes(tmp / "classes.tsv", classes, words)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def keep_classes(images: np.ndarray, labels: np.ndarray, names: list[str], kept: list[str]):
    """The images of the classes ``kept`` (label i is ``names[i]``), relabelled by their place in ``kept``."""
    lookup = np.full(len(names), -1, np.int32)
    lookup[[names.index(name) for name in kept]] = np.arange(len(kept))
    new = lookup[labels]
    return images[new >= 0], new[new >= 0]
