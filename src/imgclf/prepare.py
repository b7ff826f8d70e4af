"""The prepare stages: archive (or image folder) -> resized, class-subset uint8 arrays.

Core functions are pure (``decode_resize``, ``read_tiny_index``, ``parse_cifar_batch``; which
image goes to which split: ``imgclf.splits``); ``prepare_*`` do the I/O and write one directory
atomically: train.npz, val.npz, test.npz, classes.tsv, meta.json."""

from __future__ import annotations

import io
import json
import mmap
import multiprocessing
import os
import posixpath
import struct
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from imgclf import arrays, splits
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CHUNK = 512


@dataclass(frozen=True)
class ResizeSpec:
    size: int
    filter: str = "box"
    draft: bool = True


def _draft_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(height, width) after PIL's ``draft``: the largest DCT scale 1/8, 1/4, 1/2 keeping both sides >= size."""
    scale = min(width // size, height // size)
    factor = next((f for f in (8, 4, 2) if scale >= f), 1)
    return -(-height // factor), -(-width // factor)


def _decode_turbo(data: bytes, spec: ResizeSpec, out: np.ndarray | None) -> np.ndarray | None:
    """libjpeg-turbo's DCT-scaled decode of a YCbCr or grayscale JPEG, exactly as PIL's draft path
    would decode it (same scale, same upsampling, same DCT), or None when that path must be used.

    Straight into ``out`` when the scaled image already has the target size."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or min(width, height) < 1:
        return None
    shape = _draft_shape(width, height, spec.size) if spec.draft else (height, width)
    exact = shape == (spec.size, spec.size)
    try:
        image = simplejpeg.decode_jpeg(
            data, "RGB", min_height=shape[0], min_width=shape[1], buffer=out if exact and out is not None else None
        )
    except ValueError:  # truncated or corrupt: PIL gives the error message
        return None
    if image.shape[:2] != shape:
        return None
    if exact:
        return image
    return np.asarray(Image.fromarray(image).resize((spec.size, spec.size), FILTERS[spec.filter]), dtype=np.uint8)


def decode_resize(data: bytes, spec: ResizeSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Decode any PIL-readable image (grayscale, CMYK, palette, PNG...) to RGB ``size``x``size`` uint8,
    written into ``out`` (and returned) when given.

    JPEGs in YCbCr or grayscale go through libjpeg-turbo directly (simplejpeg): the same pixels
    as PIL's path, without its per-image overhead; everything else goes through PIL."""
    image = _decode_turbo(data, spec, out)
    if image is None:
        image = _decode_pil(data, spec)
    if out is None:
        return image
    if not np.shares_memory(image, out):  # the turbo path decodes straight into ``out``
        out[...] = image
    return out


def _decode_pil(data: bytes, spec: ResizeSpec) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if spec.draft and image.format == "JPEG":
        image.draft("RGB", (spec.size, spec.size))  # DCT scaling by 1/2, 1/4, 1/8: never below size
    image = image.convert("RGB")
    if image.size != (spec.size, spec.size):
        image = image.resize((spec.size, spec.size), FILTERS[spec.filter])
    return np.asarray(image, dtype=np.uint8)


def resize_array(images: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    if images.shape[1:3] == (spec.size, spec.size):
        return images
    out = np.empty((len(images), spec.size, spec.size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((spec.size, spec.size), FILTERS[spec.filter]))
    return out


# --- reading zip members ------------------------------------------------------------------


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_CENTRAL = struct.Struct("<4s4x2H4x3L3H8xL")  # central directory file header, the fields read here
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
Entry = tuple  # (header_offset, compress_size, file_size, crc, method, flags)


def _central_directory(view: mmap.mmap) -> dict[str, Entry] | None:
    """Name -> entry from the central directory (zip64 end records included), or None for what
    zipfile must parse (zip64 sizes per member, data before the archive, multi-disk). One struct
    unpack per member, no objects: 0.42 s for 110,203 members where ``zipfile.ZipFile`` takes 1.3 s."""
    tail_start = max(0, len(view) - (_EOCD.size + 0xFFFF))
    where = view.rfind(b"PK\x05\x06", tail_start)
    if where < 0:
        raise zipfile.BadZipFile("no end of central directory record (not a zip file, or truncated)")
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(view, where)
    cd_end = where
    locator = where - _ZIP64_LOCATOR.size
    if locator >= 0 and view[locator : locator + 4] == b"PK\x06\x07":  # over 65,535 members or 4 GiB
        _, _, record, _ = _ZIP64_LOCATOR.unpack_from(view, locator)
        if record + _ZIP64_EOCD.size > locator or view[record : record + 4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("bad zip64 end of central directory record")
        _, _, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack_from(view, record)
        cd_end = record
    if disk or cd_disk or cd_offset + cd_size != cd_end:
        return None
    entries = {}
    directory = view[cd_offset:cd_end]
    if len(directory) != cd_size:
        raise zipfile.BadZipFile("central directory truncated")
    unpack, size, position = _CENTRAL.unpack_from, _CENTRAL.size, 0
    for _ in range(count):
        if position + size > cd_size:
            raise zipfile.BadZipFile("central directory truncated")
        signature, flags, method, crc, compress_size, file_size, name_length, extra_length, comment_length, offset = (
            unpack(directory, position)
        )
        if signature != b"PK\x01\x02":
            raise zipfile.BadZipFile("bad central directory entry")
        if 0xFFFFFFFF in (compress_size, file_size, offset):
            return None
        position += size
        raw_name = directory[position : position + name_length]
        try:
            name = raw_name.decode("ascii")  # C fast path; what zipfile decodes as UTF-8 or cp437 alike
        except UnicodeDecodeError:
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        if "\x00" in name:
            name = name.split("\x00", 1)[0]
        entries[name] = (offset, compress_size, file_size, crc, method, flags)
        position += name_length + extra_length + comment_length
    return entries


class MemberTooLarge(zipfile.BadZipFile):
    pass


class ZipMembers:
    """Random access to a zip's members through one read-only memory map: a slice and a CRC check
    per member instead of zipfile's per-member file object, seeks and header reads. Stored and
    deflated members are read here; any other method (or encryption), and archives this parser
    leaves to zipfile (zip64...), go through zipfile. Safe to share with forked workers."""

    def __init__(self, path: str | Path, max_member_bytes: int | None = None):
        self.path = str(path)
        self.max_member_bytes = max_member_bytes
        with open(self.path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise zipfile.BadZipFile("empty file")
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self._zip: zipfile.ZipFile | None = None
        entries = _central_directory(self._map)
        if entries is None:
            entries = {
                info.filename: (info.header_offset, info.compress_size, info.file_size, info.CRC, info.compress_type, info.flag_bits)
                for info in self._zipfile().infolist()
            }
        self.entries = entries

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():  # forked workers: own file position
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def names(self) -> list[str]:
        return list(self.entries)

    def read(self, name: str) -> bytes:
        """The member's bytes. Memory is bounded by design: a member that declares more than
        ``max_member_bytes`` is refused before anything is inflated, and inflating stops at the
        declared size (a member that inflates beyond it is an error, not a large allocation)."""
        offset, compress_size, file_size, crc, method, flags = self.entries[name]
        if self.max_member_bytes is not None and file_size > self.max_member_bytes:
            raise MemberTooLarge(f"declares {file_size:,} bytes, over data.max_image_bytes ({self.max_member_bytes:,})")
        if flags & 0x1 or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return self._zipfile().read(name)
        if offset + _LOCAL.size > len(self._map) or self._map[offset : offset + 4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        name_length, extra_length = _LOCAL.unpack_from(self._map, offset)[9:]
        start = offset + _LOCAL.size + name_length + extra_length
        raw = self._map[start : start + compress_size]
        if len(raw) != compress_size:
            raise zipfile.BadZipFile("member data truncated")
        data = raw if method == zipfile.ZIP_STORED else zlib.decompressobj(-15).decompress(raw, file_size + 1)
        if len(data) != file_size or zlib.crc32(data) != crc:
            raise zipfile.BadZipFile("bad CRC-32 or size")
        return data


# --- parallel decoding: forked workers share the source and write into one shared array ----

_SOURCE: dict = {}
READ_ERRORS = (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def _read(name: str) -> bytes:
    source = _SOURCE["source"]
    if isinstance(source, ZipMembers):
        return source.read(name)
    path, limit = Path(source, name), _SOURCE.get("max_bytes")
    if limit is not None and (size := path.stat().st_size) > limit:
        raise MemberTooLarge(f"{size:,} bytes, over data.max_image_bytes ({limit:,})")
    return path.read_bytes()


def trailing_bytes(data: bytes) -> int:
    """Bytes after a JPEG's last end-of-image marker (FF D9); 0 for anything else."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    end = data.rfind(b"\xff\xd9")
    return 0 if end < 0 else len(data) - end - 2


def _decode_range(bounds: tuple[int, int]) -> list[tuple[int, int]]:
    """Decode one range into the shared output; return (index, bytes) of JPEGs with data after
    their end-of-image marker (decoders ignore it; the caller warns)."""
    spec, names, out, where = _SOURCE["spec"], _SOURCE["names"], _SOURCE["out"], _SOURCE["where"]
    trailing = []
    for i in range(*bounds):
        try:
            data = _read(names[i])
        except READ_ERRORS as exc:
            raise PipelineError(f"{where}: {names[i]}: cannot read ({exc})") from None
        try:
            decode_resize(data, spec, out[i])
        except Exception as exc:  # PIL raises many types for broken images
            raise PipelineError(f"{where}: {names[i]}: unreadable image ({exc})") from None
        if extra := trailing_bytes(data):
            trailing.append((i, extra))
    return trailing


def warn_trailing(where, names: list[str], trailing: list[tuple[int, int]]) -> None:
    if not trailing:
        return
    index, extra = max(trailing, key=lambda item: item[1])
    print(f"warning: {where}: {len(trailing):,} JPEG(s) carry data after the end-of-image marker (ignored; "
          f"each image stays under data.max_image_bytes); the most: {names[index]}, {extra:,} bytes", file=sys.stderr)


def _shared_array(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array in anonymous shared memory: what forked workers write, the parent sees."""
    size = int(np.prod(shape))
    if size == 0:
        return np.empty(shape, np.uint8)
    return np.frombuffer(mmap.mmap(-1, size), np.uint8).reshape(shape)


def decode_many(source: ZipMembers | str, names: list[str], spec: ResizeSpec, workers: int,
                max_bytes: int | None = None) -> np.ndarray:
    """Decode ``names`` from an open zip or a folder (path) in order, over ``workers`` processes."""
    ranges = [(i, min(i + CHUNK, len(names))) for i in range(0, len(names), CHUNK)]
    parallel = workers > 1 and len(ranges) > 1
    shape = (len(names), spec.size, spec.size, 3)
    out = _shared_array(shape) if parallel else np.empty(shape, np.uint8)
    where = getattr(source, "path", source)
    _SOURCE.clear()
    _SOURCE.update(source=source, where=where, spec=spec, names=names, out=out, max_bytes=max_bytes)
    try:
        if parallel:
            with multiprocessing.get_context("fork").Pool(min(workers, len(ranges))) as pool:
                found = pool.map(_decode_range, ranges, chunksize=1)
        else:
            found = [_decode_range(bounds) for bounds in ranges]
    finally:
        _SOURCE.clear()
    warn_trailing(where, names, [item for part in found for item in part])
    return out


# --- Tiny ImageNet -------------------------------------------------------------------------


@dataclass
class TinyIndex:
    root: str
    wnids: list[str]
    words: dict[str, str]
    train: list[tuple[str, str]]  # (member, wnid)
    val: list[tuple[str, str]]


def _safe_member(name: str, archive: str) -> None:
    normalised = posixpath.normpath(name)
    if name.startswith(("/", "\\")) or normalised.startswith("..") or ":" in name.split("/")[0]:
        raise PipelineError(f"{archive}: unsafe path in archive: {name!r}")


def open_zip(archive_path: str | Path, max_member_bytes: int | None = None) -> ZipMembers:
    try:
        return ZipMembers(archive_path, max_member_bytes)
    except FileNotFoundError:
        raise PipelineError(f"{archive_path}: archive not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, struct.error) as exc:
        raise PipelineError(f"{archive_path}: not a valid zip archive ({exc})") from None


def read_tiny_index(archive: str | Path | ZipMembers) -> TinyIndex:
    """Parse wnids.txt, words.txt, train/<wnid>/images/ and val/val_annotations.txt of the zip."""
    members = archive if isinstance(archive, ZipMembers) else open_zip(archive)
    archive_path = members.path
    names = members.names()
    for name in names:
        _safe_member(name, archive_path)
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
    words = {}
    if root + "words.txt" in members.entries:
        for line in text("words.txt").splitlines():
            key, _, value = line.partition("\t")
            words[key.strip()] = value.strip()
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
    return TinyIndex(root, wnids, words, sorted(train), sorted(val))


# --- writing --------------------------------------------------------------------------------


def write_prepared(out_dir: str | Path, parts: dict, classes: list[str], words: list[str], meta: dict) -> None:
    """Write every file into a temporary sibling directory, then swap it into place."""
    with atomic_dir(out_dir) as tmp:
        for split in arrays.SPLITS:
            images, labels = parts[split]
            arrays.save_split(tmp / f"{split}.npz", images, labels)
            meta[f"{split}_images"] = int(len(labels))
        arrays.write_classes(tmp / "classes.tsv", classes, words)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def prepare_tiny_imagenet(archive: str | Path, out_dir: str | Path, data: dict, workers: int) -> dict:
    members = open_zip(archive, data["max_image_bytes"])
    index = read_tiny_index(members)
    subset = data["imagenet200"]
    classes = splits.select_classes(index.wnids, subset["n_classes"], subset["class_selection"], subset["class_seed"], subset["wnids"])
    label_of = {w: i for i, w in enumerate(classes)}
    spec = ResizeSpec(data["image_size"], data["resize_filter"], data["jpeg_draft"])
    train = [(m, label_of[w]) for m, w in index.train if w in label_of]
    test = [(m, label_of[w]) for m, w in index.val if w in label_of]
    train_labels = np.array([label for _, label in train], np.int32)
    splits.check_classes(train_labels, classes, f"{archive}: train/")
    splits.check_classes(np.array([label for _, label in test], np.int32), classes, f"{archive}: val/ (the test split)")
    splits.check_carve(train_labels, data["val_fraction"], "train/")
    # The carve needs only labels: decode straight into train | val | test order, so each split
    # is a view of one array and nothing is copied after decoding.
    kept, held = splits.stratified_split(train_labels, data["val_fraction"], data["split_seed"])
    order = [train[i] for i in kept] + [train[i] for i in held] + test
    images = decode_many(members, [m for m, _ in order], spec, workers)
    labels = np.array([label for _, label in order], np.int32)
    cuts = np.cumsum([len(kept), len(held)])
    parts = {split: (images[a:b], labels[a:b]) for split, a, b in
              (("train", 0, cuts[0]), ("val", cuts[0], cuts[1]), ("test", cuts[1], len(order)))}
    meta = {"source": "tiny_imagenet", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": len(classes)}
    write_prepared(out_dir, parts, classes, [index.words.get(w, w) for w in classes], meta)
    return meta


# --- image folder ---------------------------------------------------------------------------


def _folder_classes(root: Path) -> dict[str, list[str]]:
    classes = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            str(f.relative_to(root.parent)) for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
        )
        if files:
            classes[class_dir.name] = files
    return classes


def prepare_image_folder(folder: str | Path, out_dir: str | Path, data: dict, workers: int) -> dict:
    """A class-per-folder tree of any image sizes: ``folder/<class>/*`` (test carved out), or
    ``folder/train/<class>/*`` with ``folder/val/<class>/*`` as the test split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: image folder not found")
    has_splits = (folder / "train").is_dir() and (folder / "val").is_dir()
    train_tree = _folder_classes(folder / "train" if has_splits else folder)
    if not train_tree:
        raise PipelineError(f"{folder}: no class folders with images")
    subset = data["imagenet200"]
    classes = splits.select_classes(list(train_tree), subset["n_classes"], subset["class_selection"], subset["class_seed"], subset["wnids"])
    spec = ResizeSpec(data["image_size"], data["resize_filter"], data["jpeg_draft"])
    base = str((folder / "train").parent if has_splits else folder.parent)

    def listing(tree):
        items = [(f, i) for i, c in enumerate(classes) for f in tree.get(c, [])]
        return [f for f, _ in items], np.array([l for _, l in items], np.int32)

    names, labels = listing(train_tree)
    splits.check_classes(labels, classes, str(folder / "train" if has_splits else folder))
    splits.check_carve(labels, data["val_fraction"], str(folder))
    images = decode_many(base, names, spec, workers, data["max_image_bytes"])
    if has_splits:
        test_names, test_labels = listing(_folder_classes(folder / "val"))
        splits.check_classes(test_labels, classes, str(folder / "val"))
        test = (decode_many(base, test_names, spec, workers, data["max_image_bytes"]), test_labels)
    else:
        splits.check_carve(labels, subset["test_fraction"], str(folder))
        (images, labels), test = splits.carve(images, labels, subset["test_fraction"], data["split_seed"])
    train_split, val_split = splits.carve(images, labels, data["val_fraction"], data["split_seed"])
    meta = {"source": "image_folder", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": len(classes)}
    write_prepared(out_dir, {"train": train_split, "val": val_split, "test": test}, classes, classes, meta)
    return meta


# --- CIFAR-10 binary ------------------------------------------------------------------------

RECORD = 1 + 32 * 32 * 3


def parse_cifar_batch(data: bytes, name: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> (uint8 N x 32 x 32 x 3, int32 labels)."""
    if not data or len(data) % RECORD:
        raise PipelineError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise PipelineError(f"{name}: label {labels.max()} out of range 0..9")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar_archive(archive: str | Path) -> dict[str, bytes]:
    wanted = {f"data_batch_{i}.bin" for i in range(1, 6)} | {"test_batch.bin", "batches.meta.txt"}
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _safe_member(member.name, str(archive))
                base = posixpath.basename(member.name)
                if member.isfile() and base in wanted:
                    found[base] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise PipelineError(f"{archive}: archive not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PipelineError(f"{archive}: not a valid CIFAR-10 tarball ({exc})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise PipelineError(f"{archive}: missing {', '.join(missing)}: not the CIFAR-10 binary version")
    return found


def prepare_cifar10(archive: str | Path, out_dir: str | Path, data: dict) -> dict:
    members = read_cifar_archive(archive)
    parts = [parse_cifar_batch(members[f"data_batch_{i}.bin"], f"{archive}: data_batch_{i}.bin") for i in range(1, 6)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = parse_cifar_batch(members["test_batch.bin"], f"{archive}: test_batch.bin")
    classes = [line.strip() for line in members["batches.meta.txt"].decode().splitlines() if line.strip()]
    if len(classes) != 10:
        raise PipelineError(f"{archive}: batches.meta.txt lists {len(classes)} classes, expected 10")
    spec = ResizeSpec(data["image_size"], data["resize_filter"], False)
    splits.check_classes(labels, classes, f"{archive}: data batches")
    splits.check_classes(test_labels, classes, f"{archive}: test_batch.bin")
    splits.check_carve(labels, data["val_fraction"], "data batches")
    train_split, val_split = splits.carve(resize_array(images, spec), labels, data["val_fraction"], data["split_seed"])
    parts = {"train": train_split, "val": val_split, "test": (resize_array(test_images, spec), test_labels)}
    meta = {"source": "cifar10", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": 10}
    write_prepared(out_dir, parts, classes, classes, meta)
    return meta
