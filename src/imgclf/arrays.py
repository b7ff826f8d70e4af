"""The prepared-data format: one ``.npz`` per split (uint8 NHWC ``images``, int32 ``labels``),
written byte-for-byte deterministically (fixed zip timestamps, stored, not compressed) so that
two engines produce identical files and DVC hashes them in seconds; plus ``classes.tsv``."""

import zipfile
from pathlib import Path

import numpy as np

from imgclf.errors import PipelineError

SPLITS = ("train", "val", "test")


def save_split(path: str | Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a split to ``path`` (not atomically: callers write into a temporary directory)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 NHWC with 3 channels, got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels shape {labels.shape} does not match {images.shape[0]} images")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in (("images", images), ("labels", labels.astype(np.int32))):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            # streamed, no copy of the array; the zip64 extra only where needed, so files of
            # ordinary size stay byte-identical to what earlier versions wrote (no DVC reruns)
            with archive.open(info, "w", force_zip64=array.nbytes * 1.05 > zipfile.ZIP64_LIMIT) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["images"], data["labels"]
    except FileNotFoundError:
        raise PipelineError(f"{path}: prepared split not found (run the prepare stage)") from None
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise PipelineError(f"{path}: not a prepared split ({exc})") from None


def write_classes(path: str | Path, wnids: list[str], words: list[str]) -> None:
    lines = ["index\twnid\twords"] + [f"{i}\t{w}\t{t}" for i, (w, t) in enumerate(zip(wnids, words))]
    Path(path).write_text("\n".join(lines) + "\n")


def read_classes(path: str | Path) -> list[tuple[str, str]]:
    return [tuple(row.split("\t")[1:3]) for row in Path(path).read_text().splitlines()[1:]]
