"""The MNIST file format, as MNIST, Fashion-MNIST, KMNIST and EMNIST ship it: four IDX files,
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (EMNIST: ``test-`` for ``t10k-``, and a prefix such as
``emnist-balanced-``), each gzipped or not, in a folder or in a tar or zip archive. The t10k files
are the test split; the validation split is carved from the training files, stratified.

An IDX file is a 4-byte magic number (two zero bytes, the data type, 0x08 for unsigned bytes, and
the number of dimensions), one big-endian 32-bit size per dimension, then the data. Grayscale
images become the RGB the models take, resized to ``data.image_size``. The source entry may name
the classes (``classes``: one name per label; default: the label numbers present in the training
labels), set the file-name ``prefix``, and give the MD5 of each file's decompressed bytes
(``idx_md5``), so Debian's gzip files, upstream's and the uncompressed files pass the same check."""

import gzip
import hashlib
import posixpath
import re
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from imgclf import splits
from imgclf.decode import ResizeSpec, resize_array
from imgclf.errors import PipelineError
from imgclf.sources.common import keep_classes, safe_member, write_prepared
from imgclf.sources.tree import missing, scan

# the file roles, the dimensions each holds, and how its name is spelled (after the prefix, before .gz)
ROLES = {"train_images": 3, "train_labels": 1, "test_images": 3, "test_labels": 1}
_NAME = re.compile(r"(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte")
MAX_DATA_BYTES = 8 << 30  # what one file may declare: far above EMNIST's largest (by_class, 550 MB)


def role_of(name: str, prefix: str = "") -> str | None:
    """``train_images``, ... for a file name in this layout (any folder, ``.gz`` or not), else None."""
    base = posixpath.basename(name).removesuffix(".gz")
    match = _NAME.fullmatch(base[len(prefix):]) if base.startswith(prefix) else None
    if match is None or int(match[3]) != (3 if match[2] == "images" else 1):
        return None
    return f"{'train' if match[1] == 'train' else 'test'}_{match[2]}"


def decompress(data: bytes, name: str) -> bytes:
    """The file's IDX bytes: gunzipped when it is gzip (by its magic bytes, whatever its name)."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise PipelineError(f"{name}: truncated gzip file") from None
    except (OSError, zlib.error) as exc:
        raise PipelineError(f"{name}: corrupt gzip file ({exc})") from None


def parse_idx(data: bytes, name: str, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions -> uint8 array of its shape."""
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise PipelineError(f"{name}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000080{ndim})")
    if data[2] != 0x08:
        raise PipelineError(f"{name}: IDX data type 0x{data[2]:02x}, expected 0x08 (unsigned bytes)")
    if data[3] != ndim:
        raise PipelineError(f"{name}: {data[3]} dimensions, expected {ndim} ({'images' if ndim == 3 else 'labels'})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise PipelineError(f"{name}: truncated header ({len(data)} bytes)")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", ndim, 4))
    expected = int(np.prod(shape, dtype=np.int64))
    if 0 in shape or expected > MAX_DATA_BYTES:
        raise PipelineError(f"{name}: header declares a {'x'.join(map(str, shape))} array")
    if len(data) - header != expected:
        state = "truncated" if len(data) - header < expected else "longer than its header says"
        raise PipelineError(f"{name}: {state}: {len(data) - header:,} bytes of data, its header declares "
                            f"{'x'.join(map(str, shape))} = {expected:,}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_files(path: str | Path, prefix: str = "") -> dict[str, tuple[str, bytes]]:
    """role -> (the file's name, its IDX bytes), from a folder or a tar or zip archive."""
    path = Path(path)
    found: dict[str, list[tuple[str, bytes]]] = {role: [] for role in ROLES}

    def take(name: str, read) -> None:
        if role := role_of(name, prefix):
            found[role].append((name, read))

    if path.is_dir():
        for name, _, _ in scan(path):
            take(name, lambda name=name: (path / name).read_bytes())
        where = f"{path}/"
    elif not path.exists():
        raise PipelineError(f"{path}: not found{missing(path)}")
    elif zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
            for info in archive.infolist():
                safe_member(info.filename, str(path))
                if not info.is_dir():
                    take(info.filename, lambda info=info: archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise PipelineError(f"{path}: not a valid zip archive ({exc})") from None
        where = f"{path}: "
    else:
        try:
            archive = tarfile.open(path, "r:*")
            for member in archive:
                safe_member(member.name, str(path))
                if member.isfile():
                    take(member.name, lambda member=member: archive.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise PipelineError(f"{path}: not a folder, zip or tar archive of IDX files ({exc})") from None
        where = f"{path}: "
    files = {}
    for role, matches in found.items():
        spelled = f"{prefix}{'t10k' if role.startswith('test') else 'train'}-{role.split('_')[1]}-idx{ROLES[role]}-ubyte[.gz]"
        if not matches:
            raise PipelineError(f"{path}: no {role.replace('_', ' ')} file ({spelled})")
        if len(matches) > 1:
            raise PipelineError(f"{path}: {len(matches)} files for the {role.replace('_', ' ')}: "
                                f"{', '.join(name for name, _ in matches)}; keep one (or set the source's prefix)")
        name, read = matches[0]
        try:
            raw = read()
        except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile) as exc:
            raise PipelineError(f"{where}{name}: cannot read ({exc})") from None
        files[role] = (f"{where}{name}", decompress(raw, f"{where}{name}"))
    return files


def load(path: str | Path, prefix: str = "", checksums: dict | None = None):
    """(train images, train labels, test images, test labels) as read from the four files, each
    checked: its MD5 (of the decompressed bytes) where ``checksums`` gives one, its format, and the
    image and label counts of each split against each other."""
    files = read_files(path, prefix)
    for role, (name, data) in files.items():
        if (expected := (checksums or {}).get(role)) and (actual := hashlib.md5(data).hexdigest()) != expected:
            raise PipelineError(f"{name}: MD5 of its IDX bytes is {actual}, expected {expected} (idx_md5.{role})")
    arrays = {role: parse_idx(data, name, ROLES[role]) for role, (name, data) in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise PipelineError(f"{files[f'{split}_labels'][0]}: {len(labels):,} labels for the {len(images):,} images of "
                                f"{files[f'{split}_images'][0]}")
    return (arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]), files


def label_names(labels: np.ndarray, classes: list[str] | None, name: str) -> list[str]:
    """The name of each label number: the source's ``classes`` (label i is classes[i]), or the
    label numbers the training file holds."""
    if classes:
        if labels.max() >= len(classes):
            raise PipelineError(f"{name}: label {int(labels.max())} out of range: the source's classes name "
                                f"{len(classes)} (labels 0..{len(classes) - 1})")
        return list(classes)
    return [str(label) for label in range(int(labels.max()) + 1)]


def to_rgb(images: np.ndarray, spec: ResizeSpec) -> np.ndarray:
    """Grayscale N x H x W -> RGB N x size x size x 3, resized with the data set's filter."""
    return resize_array(np.repeat(images[..., None], 3, axis=3), spec)


def prepare(path: str | Path, out_dir: str | Path, settings: dict, workers: int = 1) -> dict:
    """``workers`` unused: the files need no decoding."""
    (train_x, train_y, test_x, test_y), files = load(path, settings["prefix"], settings["idx_md5"])
    names = label_names(train_y, settings["classes"], files["train_labels"][0])
    present = [names[label] for label in np.unique(train_y)]
    if (extra := np.setdiff1d(np.unique(test_y), np.unique(train_y))).size:
        raise PipelineError(f"{files['test_labels'][0]}: label {int(extra[0])} out of range: no training image has it")
    classes = splits.select_in_order(present, settings)
    spec = ResizeSpec(settings["image_size"], settings["resize_filter"], False)
    parts = {}
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        images, labels = keep_classes(images, labels, names, classes)
        parts[split] = (to_rgb(images, spec), labels)
        splits.check_classes(labels, classes, files[f"{split}_labels"][0])
    splits.check_carve(parts["train"][1], settings["val_fraction"], files["train_labels"][0])
    parts["train"], parts["val"] = splits.carve(*parts["train"], settings["val_fraction"], settings["split_seed"])
    return write_prepared(out_dir, parts, classes, classes, settings)
