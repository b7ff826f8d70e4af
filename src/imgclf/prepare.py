"""The prepare stages: archive (or image folder) -> resized, class-subset uint8 arrays.

Core functions are pure (``select_classes``, ``decode_resize``, ``stratified_split``,
``read_tiny_index``, ``parse_cifar_batch``); ``prepare_*`` do the I/O and write one directory
atomically: train.npz, val.npz, test.npz, classes.tsv, meta.json."""

from __future__ import annotations

import io
import json
import multiprocessing
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from imgclf import arrays
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


def decode_resize(data: bytes, spec: ResizeSpec) -> np.ndarray:
    """Decode any PIL-readable image (grayscale, CMYK, palette, PNG...) to RGB ``size``x``size`` uint8."""
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


def select_classes(available: list[str], n_classes: int, method: str, seed: int, wnids: list[str]) -> list[str]:
    """The sorted class subset: a seeded draw of ``n_classes`` or exactly ``wnids``."""
    available = sorted(available)
    if method == "list":
        missing = sorted(set(wnids) - set(available))
        if missing:
            raise PipelineError(f"data.imagenet200.wnids: not in the source: {', '.join(missing[:5])}")
        return sorted(wnids)
    if n_classes > len(available):
        raise PipelineError(
            f"data.imagenet200.n_classes: {n_classes} requested but the source has only {len(available)} classes"
        )
    if n_classes == len(available):
        return available
    chosen = np.random.default_rng(seed).choice(len(available), size=n_classes, replace=False)
    return sorted(available[i] for i in chosen)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), each sorted, with ``fraction`` of every class held out."""
    indices = np.arange(len(labels))
    kept, held = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(kept), np.sort(held)


# --- parallel decoding: each worker opens the source itself; only arrays cross processes ----

_SOURCE: dict = {}


def _init_worker(kind: str, location: str, spec: ResizeSpec) -> None:
    _SOURCE.clear()
    _SOURCE.update(kind=kind, location=location, spec=spec)
    if kind == "zip":
        _SOURCE["zip"] = zipfile.ZipFile(location)


def _read(name: str) -> bytes:
    if _SOURCE["kind"] == "zip":
        return _SOURCE["zip"].read(name)
    return Path(_SOURCE["location"], name).read_bytes()


def _decode_chunk(names: list[str]) -> np.ndarray:
    spec = _SOURCE["spec"]
    out = np.empty((len(names), spec.size, spec.size, 3), np.uint8)
    for i, name in enumerate(names):
        try:
            data = _read(name)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise PipelineError(f"{_SOURCE['location']}: {name}: cannot read ({exc})") from None
        try:
            out[i] = decode_resize(data, spec)
        except Exception as exc:  # PIL raises many types for broken images
            raise PipelineError(f"{_SOURCE['location']}: {name}: unreadable image ({exc})") from None
    return out


def decode_many(kind: str, location: str, names: list[str], spec: ResizeSpec, workers: int) -> np.ndarray:
    """Decode ``names`` from a zip or a folder in order, over ``workers`` processes."""
    chunks = [names[i : i + CHUNK] for i in range(0, len(names), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        _init_worker(kind, location, spec)
        parts = [_decode_chunk(chunk) for chunk in chunks]
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers, initializer=_init_worker, initargs=(kind, location, spec)) as pool:
            parts = pool.map(_decode_chunk, chunks, chunksize=1)
    if not parts:
        return np.empty((0, spec.size, spec.size, 3), np.uint8)
    return np.concatenate(parts)


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


def read_tiny_index(archive_path: str | Path) -> TinyIndex:
    """Parse wnids.txt, words.txt, train/<wnid>/images/ and val/val_annotations.txt of the zip."""
    archive_path = str(archive_path)
    try:
        archive = zipfile.ZipFile(archive_path)
    except FileNotFoundError:
        raise PipelineError(f"{archive_path}: archive not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise PipelineError(f"{archive_path}: not a valid zip archive ({exc})") from None
    with archive:
        names = archive.namelist()
        for name in names:
            _safe_member(name, archive_path)
        roots = [name[: -len("wnids.txt")] for name in names if posixpath.basename(name) == "wnids.txt"]
        if not roots:
            raise PipelineError(f"{archive_path}: wnids.txt missing: not a Tiny ImageNet archive")
        root = min(roots, key=len)

        def text(member: str) -> str:
            try:
                return archive.read(root + member).decode("utf-8")
            except KeyError:
                raise PipelineError(f"{archive_path}: {root}{member} missing") from None
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise PipelineError(f"{archive_path}: {root}{member}: corrupt ({exc})") from None

        wnids = [line.strip() for line in text("wnids.txt").splitlines() if line.strip()]
        words = {}
        if root + "words.txt" in names:
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
            if member not in archive.NameToInfo:
                raise PipelineError(f"{archive_path}: {member} listed in val_annotations.txt but missing")
            val.append((member, fields[1]))
    if not train:
        raise PipelineError(f"{archive_path}: no train/<wnid>/images/ files")
    return TinyIndex(root, wnids, words, sorted(train), sorted(val))


# --- writing --------------------------------------------------------------------------------


def write_prepared(out_dir: str | Path, splits: dict, classes: list[str], words: list[str], meta: dict) -> None:
    """Write every file into a temporary sibling directory, then swap it into place."""
    with atomic_dir(out_dir) as tmp:
        for split in arrays.SPLITS:
            images, labels = splits[split]
            arrays.save_split(tmp / f"{split}.npz", images, labels)
            meta[f"{split}_images"] = int(len(labels))
        arrays.write_classes(tmp / "classes.tsv", classes, words)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _carve(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    kept, held = stratified_split(labels, fraction, seed)
    return (images[kept], labels[kept]), (images[held], labels[held])


def _check_carve(labels: np.ndarray, fraction: float, what: str) -> None:
    counts = np.bincount(labels)
    if counts.min() * fraction < 1:
        raise PipelineError(
            f"data.val_fraction: {fraction} leaves class {int(counts.argmin())} of {what} "
            f"({int(counts.min())} images) with no held-out image"
        )


def prepare_tiny_imagenet(archive: str | Path, out_dir: str | Path, data: dict, workers: int) -> dict:
    index = read_tiny_index(archive)
    subset = data["imagenet200"]
    classes = select_classes(index.wnids, subset["n_classes"], subset["class_selection"], subset["class_seed"], subset["wnids"])
    label_of = {w: i for i, w in enumerate(classes)}
    spec = ResizeSpec(data["image_size"], data["resize_filter"], data["jpeg_draft"])
    train = [(m, label_of[w]) for m, w in index.train if w in label_of]
    test = [(m, label_of[w]) for m, w in index.val if w in label_of]
    train_labels = np.array([label for _, label in train], np.int32)
    _check_carve(train_labels, data["val_fraction"], "train/")
    names = [m for m, _ in train] + [m for m, _ in test]
    images = decode_many("zip", str(archive), names, spec, workers)
    train_split, val_split = _carve(images[: len(train)], train_labels, data["val_fraction"], data["split_seed"])
    splits = {"train": train_split, "val": val_split, "test": (images[len(train):], np.array([l for _, l in test], np.int32))}
    meta = {"source": "tiny_imagenet", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": len(classes)}
    write_prepared(out_dir, splits, classes, [index.words.get(w, w) for w in classes], meta)
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
    classes = select_classes(list(train_tree), subset["n_classes"], subset["class_selection"], subset["class_seed"], subset["wnids"])
    spec = ResizeSpec(data["image_size"], data["resize_filter"], data["jpeg_draft"])
    base = str((folder / "train").parent if has_splits else folder.parent)

    def listing(tree):
        items = [(f, i) for i, c in enumerate(classes) for f in tree.get(c, [])]
        return [f for f, _ in items], np.array([l for _, l in items], np.int32)

    names, labels = listing(train_tree)
    _check_carve(labels, data["val_fraction"], str(folder))
    images = decode_many("folder", base, names, spec, workers)
    if has_splits:
        test_names, test_labels = listing(_folder_classes(folder / "val"))
        test = (decode_many("folder", base, test_names, spec, workers), test_labels)
    else:
        _check_carve(labels, subset["test_fraction"], str(folder))
        (images, labels), test = _carve(images, labels, subset["test_fraction"], data["split_seed"])
    train_split, val_split = _carve(images, labels, data["val_fraction"], data["split_seed"])
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
    _check_carve(labels, data["val_fraction"], "data batches")
    train_split, val_split = _carve(resize_array(images, spec), labels, data["val_fraction"], data["split_seed"])
    splits = {"train": train_split, "val": val_split, "test": (resize_array(test_images, spec), test_labels)}
    meta = {"source": "cifar10", "image_size": spec.size, "resize_filter": spec.filter, "n_classes": 10}
    write_prepared(out_dir, splits, classes, classes, meta)
    return meta
