"""Benchmark: the prepare stage against a naive single-process PIL loop, in the same run.

Generates a full-size Tiny ImageNet layout (200 classes x 500 train + 10,000 val JPEGs at 64x64),
extracts it for the naive loop (open -> convert RGB -> resize -> array, one file at a time), and
times ``imgclf prepare``'s core (reading the zip, DCT-scaled decoding, a worker per core, writing
the arrays). Target: >= 2.5x the naive loop on 2 cores and all 110,000 images in under 15 s.

The generated images carry less pixel noise than the embedded sample (``--noise 7``) so that a
JPEG averages about what the real archive's do (248,100,043 bytes / 120,000 images, about 2 KB
with its zip headers): noisier images decode slower in both loops.

    python bench/bench_prepare.py [--workdir bench/out] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgclf import config, prepare, sample


def naive(folder: Path, size: int) -> int:
    files = sorted(folder.rglob("*.JPEG"))
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, path in enumerate(files):
        out[i] = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BOX))
    return len(files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench/out")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--noise", type=float, default=7.0, help="pixel noise std of the generated images")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    archive = work / f"tiny-full-{args.train_per_class}-noise{args.noise:g}.zip"
    if not archive.exists():
        started = time.perf_counter()
        sample.make_tiny_imagenet(archive, classes=200, train_per_class=args.train_per_class, val_per_class=50, test_images=0,
                                  noise=args.noise)
        print(f"generated {archive} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    extracted = work / f"extracted-{archive.stem}"
    if not extracted.exists():
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(extracted)
    data = config.load("params.yaml")["data"]

    started = time.perf_counter()
    count = naive(extracted, data["image_size"])
    naive_seconds = time.perf_counter() - started

    started = time.perf_counter()
    meta = prepare.prepare_tiny_imagenet(archive, work / "prepared", data, args.workers)
    ours_seconds = time.perf_counter() - started
    ours_count = meta["train_images"] + meta["val_images"] + meta["test_images"]
    assert ours_count == count, (ours_count, count)

    jpeg_bytes = [entry[2] for name, entry in prepare.open_zip(archive).entries.items() if name.endswith(".JPEG")]
    print(f"images                     {count}, {sum(jpeg_bytes) / len(jpeg_bytes):.0f} bytes per JPEG on average")
    print(f"naive PIL loop, 1 process  {naive_seconds:7.2f} s  {count / naive_seconds:8.0f} img/s")
    print(f"imgclf prepare, {args.workers} workers  {ours_seconds:7.2f} s  {count / ours_seconds:8.0f} img/s "
          f"(includes writing the arrays)")
    print(f"speed-up                   {naive_seconds / ours_seconds:7.2f}x  (target >= 2.5x)")
    print(f"under 15 s                 {'yes' if ours_seconds < 15 else 'NO'}")
    return 0 if naive_seconds / ours_seconds >= 2.5 and ours_seconds < 15 else 1


if __name__ == "__main__":
    sys.exit(main())
