"""The embedded sample: deterministic archives in the exact Tiny ImageNet zip layout and the
CIFAR-10 binary tarball layout, with learnable classes and the odd images real data has.

Class ``c`` is a sinusoidal grating whose hue, orientation and period encode ``c``, with a random
phase, brightness and noise per image, so a CNN learns it but not from a single pixel. Odd cases,
at fixed positions: grayscale, CMYK and progressive JPEGs, an image that is not 64x64, and a PNG
saved under a .JPEG name (ImageNet has one)."""

import functools
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf.io_utils import atomic_path

ROOT = "tiny-imagenet-200"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_HUES = np.array([[230, 40, 40], [40, 200, 40], [40, 60, 230], [230, 210, 30], [210, 40, 210], [30, 210, 210],
                  [240, 130, 20], [120, 60, 20], [150, 150, 150], [110, 30, 200]], dtype=np.float32)
_PERIODS = (40.0, 24.0, 16.0, 12.0, 9.0)
# the odd image of class ``label % 13`` (its first training image)
_ODD = {0: "gray", 3: "cmyk", 5: "progressive", 7: "odd_size", 11: "png"}


def wnid(index: int) -> str:
    return f"n{1440000 + index * 7919:08d}"


def class_image(label: int, rng: np.random.Generator, size: int = 64, noise: float = 18.0) -> np.ndarray:
    """One learnable image of class ``label`` (0..199) as uint8 HxWx3, with Gaussian pixel noise of std ``noise``."""
    hue = _HUES[label % 10]
    angle = np.pi / 4 * ((label // 10) % 4)
    period = _PERIODS[(label // 40) % 5] * size / 64
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    background = rng.uniform(20, 80, size=3).astype(np.float32)
    image = background + wave[..., None] * (hue - background) * rng.uniform(0.7, 1.0)
    image += rng.normal(0, noise, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, odd: str | None) -> bytes:
    image = Image.fromarray(array)
    if odd in ("gray", "cmyk"):
        image = image.convert("L" if odd == "gray" else "CMYK")
    elif odd == "odd_size":
        image = image.resize((72, 56), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if odd == "png":
        image.save(buffer, "PNG")
    else:
        image.save(buffer, "JPEG", quality=90, progressive=odd == "progressive")
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(f"{ROOT}/{name}", date_time=(2015, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def make_tiny_imagenet(path: str | Path, seed: int = 0, classes: int = 200, train_per_class: int = 40,
                       val_per_class: int = 5, test_images: int = 200, noise: float = 18.0) -> None:
    """Write a Tiny ImageNet-layout zip to ``path`` (atomically); the defaults make the embedded sample."""
    rng = np.random.default_rng(seed)
    wnids = [wnid(c) for c in range(classes)]
    image = functools.partial(class_image, rng=rng, noise=noise)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        _add(archive, "wnids.txt", "".join(f"{w}\n" for w in wnids).encode())
        extra = [f"n{9000000 + i:08d}\tunused class {i}\n" for i in range(5)]
        words = [f"{w}\tsynthetic class {c}, grating {c % 10}/{(c // 10) % 4}/{(c // 40) % 5}\n" for c, w in enumerate(wnids)]
        _add(archive, "words.txt", "".join(extra[:3] + words + extra[3:]).encode())
        for label, w in enumerate(wnids):
            for i in range(train_per_class):
                odd = _ODD.get(label % 13) if i == 0 else None
                _add(archive, f"train/{w}/images/{w}_{i}.JPEG", _encode(image(label), odd))
            boxes = "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class))
            _add(archive, f"train/{w}/{w}_boxes.txt", boxes.encode())
        annotations = []
        for i in range(classes * val_per_class):
            label = int(rng.integers(classes)) if i >= classes else i  # every class at least once
            _add(archive, f"val/images/val_{i}.JPEG", _encode(image(label), "gray" if i % 97 == 5 else None))
            annotations.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t63\t63\n")
        _add(archive, "val/val_annotations.txt", "".join(annotations).encode())
        for i in range(test_images):
            _add(archive, f"test/images/test_{i}.JPEG", _encode(image(int(rng.integers(classes))), None))


def cifar_records(labels: np.ndarray, rng: np.random.Generator) -> bytes:
    """CIFAR-10 binary records: 1 label byte then 1024 R, 1024 G, 1024 B bytes per image."""
    # label * 4: the 10 classes spread over hue and orientation
    return b"".join(bytes([label]) + class_image(label * 4, rng, size=32).transpose(2, 0, 1).tobytes()
                    for label in map(int, labels))


def make_cifar10(path: str | Path, seed: int = 0, train_per_batch: int = 300, test_images: int = 500) -> None:
    """Write a cifar-10-binary.tar.gz-layout tarball to ``path`` (atomically); the defaults make the embedded sample."""
    rng = np.random.default_rng(seed + 1)
    members = {}
    for name, images in [*((f"data_batch_{b}.bin", train_per_batch) for b in range(1, 6)),
                         ("test_batch.bin", test_images)]:
        labels = np.arange(images) % 10
        rng.shuffle(labels)
        members[name] = cifar_records(labels, rng)
    members["batches.meta.txt"] = ("\n".join(CIFAR_CLASSES) + "\n\n").encode()
    members["readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"
    with (atomic_path(path) as tmp, open(tmp, "wb") as raw,
          gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=6) as gz,
          tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar):
        for name in sorted(members):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size, info.mtime, info.mode = len(members[name]), 1245000000, 0o644
            tar.addfile(info, io.BytesIO(members[name]))


# sample name (imgclf.datasets.SAMPLES) -> the function that writes its archive
MAKERS = {"tiny_imagenet": make_tiny_imagenet, "cifar10": make_cifar10}
