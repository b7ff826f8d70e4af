import collections
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image, UnidentifiedImageError

from conftest import ROOT, digest, load_params, run, write_params
from imgclf import arrays, config, datasets, decode, sample, splits
from imgclf.sources import cifar10, common, tiny_imagenet, zipread
from imgclf.sources import folder as folder_source
from imgclf.errors import PipelineError


def small_data(data_params, n_classes=12, **changes):
    data = json.loads(json.dumps(data_params))
    data["imagenet200"]["n_classes"] = n_classes
    data.update(changes)
    return datasets.settings("imagenet200", data)  # what prepare reads


def jpeg(array, mode="RGB", **save):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, "JPEG", **save)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("draft", [True, False])
def test_decode_resize_gives_rgb_at_size(mode, draft):
    image = sample.class_image(3, np.random.default_rng(0))
    out = decode.decode_resize(jpeg(image, mode), decode.ResizeSpec(32, "box", draft))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode == "L":
        assert np.array_equal(out[..., 0], out[..., 1])


def test_decode_resize_matches_plain_pil_closely():
    image = sample.class_image(7, np.random.default_rng(1))
    data = jpeg(image, quality=95)
    fast = decode.decode_resize(data, decode.ResizeSpec(32, "box", True)).astype(int)
    plain = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.Resampling.BOX)).astype(int)
    assert np.abs(fast - plain).mean() < 5  # DCT scaling vs. full decode + box: same picture


# PIL's filter for each resize_filter name, written out here (not decode.FILTERS): the reference
PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
               "hamming": Image.Resampling.HAMMING, "bicubic": Image.Resampling.BICUBIC,
               "lanczos": Image.Resampling.LANCZOS}


@pytest.mark.parametrize("name", config.RESIZE_FILTERS)
def test_each_resize_filter_gives_exactly_pils_pixels(name):
    """Each resize_filter the params accept resizes exactly as PIL's filter of that name: a JPEG
    through libjpeg-turbo (with and without draft), a PNG through PIL, and CIFAR-10's arrays."""
    assert sorted(PIL_FILTERS) == sorted(config.RESIZE_FILTERS)
    image = sample.class_image(4, np.random.default_rng(3))  # 64x64: drafts to 32x32, then resized to 24x24
    png = sample._encode(image, "png")
    expected = np.asarray(Image.fromarray(image).resize((24, 24), PIL_FILTERS[name]))
    assert np.array_equal(decode.decode_resize(png, decode.ResizeSpec(24, name, False)), expected)
    assert np.array_equal(decode.resize_array(image[None], decode.ResizeSpec(24, name))[0], expected)
    data = jpeg(image, quality=90)
    for draft in (False, True):
        spec = decode.ResizeSpec(24, name, draft)
        assert decode._decode_turbo(data, spec, None) is not None
        reference = Image.open(io.BytesIO(data))
        if draft:
            reference.draft("RGB", (24, 24))
        assert reference.size == ((32, 32) if draft else (64, 64))
        expected = np.asarray(reference.convert("RGB").resize((24, 24), PIL_FILTERS[name]))
        assert np.array_equal(decode.decode_resize(data, spec), expected), draft


def test_the_resize_filter_changes_the_pixels():
    """No two resize filters give the same image from the same source, on either decode path."""
    image = sample.class_image(4, np.random.default_rng(3))
    for data in (jpeg(image, quality=90), sample._encode(image, "png")):
        out = {name: decode.decode_resize(data, decode.ResizeSpec(24, name, False)).tobytes()
               for name in config.RESIZE_FILTERS}
        assert len(set(out.values())) == len(config.RESIZE_FILTERS)
    out = {name: decode.resize_array(image[None], decode.ResizeSpec(24, name)).tobytes() for name in config.RESIZE_FILTERS}
    assert len(set(out.values())) == len(config.RESIZE_FILTERS)


def test_odd_sizes_png_and_progressive_decode():
    image = sample.class_image(5, np.random.default_rng(2))
    for odd in ("odd_size", "png", "progressive", "gray", "cmyk"):
        out = decode.decode_resize(sample._encode(image, odd), decode.ResizeSpec(32, "bilinear", True))
        assert out.shape == (32, 32, 3)


def pil_reference(data: bytes, spec) -> np.ndarray:
    """The plain PIL path: draft (DCT scaling) for JPEGs, convert to RGB, resize with the filter."""
    image = Image.open(io.BytesIO(data))
    if spec.draft and image.format == "JPEG":
        image.draft("RGB", (spec.size, spec.size))
    image = image.convert("RGB")
    if image.size != (spec.size, spec.size):
        image = image.resize((spec.size, spec.size), decode.FILTERS[spec.filter])
    return np.asarray(image)


SPECS = [decode.ResizeSpec(32, "box", True), decode.ResizeSpec(32, "bicubic", False),
         decode.ResizeSpec(16, "lanczos", True), decode.ResizeSpec(64, "bilinear", True)]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_turbo_decoder_gives_exactly_the_pil_pixels_on_every_sample_image(small_tiny_zip, spec):
    """The sample holds each kind of odd image real data has; every image decodes to PIL's pixels,
    and all but the CMYK JPEGs and the PNGs named .JPEG take the fast path."""
    members = common.open_zip(small_tiny_zip)
    names = [n for n in members.names() if n.endswith(".JPEG")]
    kinds = collections.Counter()
    for name in names:
        data = members.read(name)
        kind = _kind(Image.open(io.BytesIO(data)))
        kinds[kind] += 1
        assert np.array_equal(decode.decode_resize(data, spec), pil_reference(data, spec)), name
        assert (decode._decode_turbo(data, spec, None) is not None) == (kind not in ("cmyk", "png")), (name, kind)
    assert set(kinds) == {"plain", "gray", "cmyk", "progressive", "odd_size", "png"}, kinds


def _kind(image: Image.Image) -> str:
    if image.format == "PNG":
        return "png"
    if image.mode in ("L", "CMYK"):
        return {"L": "gray", "CMYK": "cmyk"}[image.mode]
    return "progressive" if image.info.get("progressive") else "odd_size" if image.size != (64, 64) else "plain"


@pytest.mark.parametrize("width,height", [(500, 375), (333, 500), (65, 63), (256, 256), (31, 40), (1000, 20)])
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_turbo_decoder_matches_pil_on_any_size_and_subsampling(width, height, subsampling):
    image = Image.fromarray(sample.class_image(9, np.random.default_rng(width))).resize((width, height))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, subsampling=subsampling)
    for spec in SPECS:
        assert decode._decode_turbo(buffer.getvalue(), spec, None) is not None
        assert np.array_equal(decode.decode_resize(buffer.getvalue(), spec), pil_reference(buffer.getvalue(), spec))


def test_turbo_decoder_writes_into_the_given_row():
    data = jpeg(sample.class_image(1, np.random.default_rng(0)))
    out = np.zeros((2, 32, 32, 3), np.uint8)
    result = decode.decode_resize(data, decode.ResizeSpec(32, "box", True), out[1])
    assert np.shares_memory(result, out) and out[1].any() and not out[0].any()


@pytest.mark.parametrize("cut, message", [
    (lambda size: size // 2, r"^image file is truncated \(\d+ bytes not processed\)$"),
    (lambda size: size - 10, r"^image file is truncated \(\d+ bytes not processed\)$"),
    (lambda size: 40, r"^Truncated File Read$"),  # inside the headers
], ids=["half", "end", "headers"])
def test_truncated_jpeg_is_an_error_not_a_grey_image(cut, message):
    """A cut JPEG raises PIL's OSError saying it is truncated (libjpeg-turbo's own error is not
    let through): what prepare's one-line "truncated JPEG" reads."""
    data = jpeg(sample.class_image(1, np.random.default_rng(0)))
    data = data[:cut(len(data))]
    with pytest.raises(OSError, match=message) as error:
        decode.decode_resize(data, decode.ResizeSpec(32))
    assert type(error.value) is OSError
    assert decode.what_is_wrong(data, error.value) == "truncated JPEG"


def _zip_with(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_members_read_what_zipfile_reads(tmp_path, compression):
    rng = np.random.default_rng(0)
    members = {f"d/{i}.bin": rng.bytes(int(rng.integers(0, 3000))) for i in range(50)}
    members["ünïcode/name.txt"] = b"text " * 100
    path = _zip_with(tmp_path / "a.zip", members, compression)
    reader = zipread.ZipMembers(path)
    assert reader.names() == list(members)
    assert all(reader.read(name) == data for name, data in members.items())


def test_zip_members_handle_zip64_directories(tmp_path):
    names = [f"m/{i}" for i in range(65_600)]  # over 65,535 members: zipfile writes a zip64 end record
    path = _zip_with(tmp_path / "big.zip", dict.fromkeys(names, b"x"))
    reader = zipread.ZipMembers(path)
    assert zipread._central_directory(reader._map) is not None and reader._zip is None  # parsed here
    assert reader.names() == names and reader.read(names[-1]) == b"x"


def test_zip_members_detect_corrupt_member_data(tmp_path):
    path = _zip_with(tmp_path / "a.zip", {"a.bin": b"A" * 1000, "b.bin": b"B" * 1000})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"A" * 1000) + 500] ^= 0xFF
    path.write_bytes(bytes(raw))
    reader = zipread.ZipMembers(path)
    assert reader.read("b.bin") == b"B" * 1000
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        reader.read("a.bin")


def test_zip_members_read_in_forked_workers(tmp_path, small_tiny_zip):
    """bzip2 members go through zipfile: each forked worker must reopen it (no shared file position)."""
    with zipfile.ZipFile(small_tiny_zip) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    path = _zip_with(tmp_path / "bz.zip", members, zipfile.ZIP_BZIP2)
    reader = common.open_zip(path)
    reader.read("tiny-imagenet-200/wnids.txt")  # opens zipfile in this process before forking
    names = [n for n in members if n.endswith(".JPEG")]
    spec = decode.ResizeSpec(32)
    serial = common.decode_many(reader, names, spec, workers=1)
    common.CHUNK, chunk = 7, common.CHUNK
    try:
        parallel = common.decode_many(reader, names, spec, workers=2)
    finally:
        common.CHUNK = chunk
    assert np.array_equal(serial, parallel)


def test_unreadable_image_raises():
    """Bytes that start as a JPEG but are none raise PIL's OSError, not libjpeg-turbo's ValueError;
    bytes of no image format raise PIL's UnidentifiedImageError."""
    with pytest.raises(OSError, match=r"^Truncated File Read$") as error:
        decode.decode_resize(b"\xff\xd8\xff\xe0 not really a jpeg", decode.ResizeSpec(32))
    assert type(error.value) is OSError
    with pytest.raises(UnidentifiedImageError, match=r"^cannot identify image file "):
        decode.decode_resize(b"not an image at all", decode.ResizeSpec(32))


def test_select_classes_is_deterministic_and_sorted():
    available = [f"n{i:08d}" for i in range(50)]
    first = splits.select_classes(available, 10, "seeded", 3, [])
    assert first == splits.select_classes(list(reversed(available)), 10, "seeded", 3, [])
    assert first == sorted(first) and len(set(first)) == 10
    assert first != splits.select_classes(available, 10, "seeded", 4, [])
    assert splits.select_classes(available, 2, "list", 0, ["n00000009", "n00000001"]) == ["n00000001", "n00000009"]
    with pytest.raises(PipelineError, match="n_classes: 51 requested but the source has only 50"):
        splits.select_classes(available, 51, "seeded", 0, [])
    with pytest.raises(PipelineError, match="not in the source: nope"):
        splits.select_classes(available, 1, "list", 0, ["nope"])


def test_stratified_split_keeps_every_class():
    labels = np.repeat(np.arange(10), 20)
    kept, held = splits.stratified_split(labels, 0.1, 0)
    assert len(held) == 20 and set(np.bincount(labels[held])) == {2}
    assert not set(kept) & set(held)


def test_read_tiny_index(small_tiny_zip):
    index = tiny_imagenet.read_tiny_index(small_tiny_zip)
    assert len(index.wnids) == 12 and len(index.train) == 240 and len(index.val) == 60
    assert index.words[index.wnids[0]].startswith("synthetic class 0")


def test_prepare_tiny_imagenet_subsets_and_splits(small_tiny_zip, tmp_path, data_params):
    data = small_data(data_params, n_classes=6, val_fraction=0.2)
    meta = tiny_imagenet.prepare(small_tiny_zip, tmp_path / "out", data, workers=2)
    assert meta["n_classes"] == 6
    x_train, y_train = arrays.load_split(tmp_path / "out" / "train.npz")
    x_val, y_val = arrays.load_split(tmp_path / "out" / "val.npz")
    x_test, y_test = arrays.load_split(tmp_path / "out" / "test.npz")
    assert x_train.shape == (96, 32, 32, 3) and x_val.shape == (24, 32, 32, 3)
    assert set(np.bincount(y_val)) == {4}
    assert len(y_test) == sum(1 for _, w in tiny_imagenet.read_tiny_index(small_tiny_zip).val
                              if w in [c for c, _ in arrays.read_classes(tmp_path / "out" / "classes.tsv")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "classes.tsv", "meta.json", "test.npz", "train.npz", "val.npz"]


def test_prepare_is_byte_identical_and_worker_independent(small_tiny_zip, tmp_path, data_params):
    data = small_data(data_params)
    tiny_imagenet.prepare(small_tiny_zip, tmp_path / "a", data, workers=1)
    tiny_imagenet.prepare(small_tiny_zip, tmp_path / "b", data, workers=2)
    for name in ("train.npz", "val.npz", "test.npz", "classes.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_prepare_command_reads_each_source_with_its_layouts_module(small_tiny_zip, tmp_path, data_params, capsys):
    """``imgclf prepare`` (called in this process) picks the module of the source's layout: the
    archive's arrays are those of the layout's own ``prepare``, and a CIFAR-10 source goes through
    the CIFAR reader."""
    from imgclf import cli

    chosen = load_params()
    chosen["data"]["imagenet200"]["n_classes"] = 12
    params = write_params(tmp_path / "params.yaml", chosen)
    out = tmp_path / "cli"
    assert cli.main(["prepare", "imagenet200", "--source", str(small_tiny_zip), "--out", str(out),
                     "--params", str(params), "--threads", "1"]) == 0
    assert capsys.readouterr().out == f"{out}: 216 train, 24 val, 60 test images, 12 classes at 32x32\n"
    tiny_imagenet.prepare(small_tiny_zip, tmp_path / "direct", small_data(data_params), workers=1)
    for name in ("train.npz", "val.npz", "test.npz", "classes.tsv"):
        assert (out / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    assert {name: datasets.layout_module(name).__name__ for name in datasets.LAYOUTS} == {
        "tiny_imagenet_zip": "imgclf.sources.tiny_imagenet", "cifar10_binary": "imgclf.sources.cifar10",
        "folder": "imgclf.sources.folder", "mnist_idx": "imgclf.sources.mnist_idx"}


def test_image_size_and_filter_apply(small_tiny_zip, tmp_path, data_params):
    """prepare resizes to image_size with resize_filter: at 24x24 every sample image is resized
    (a 64x64 JPEG drafts to 32x32), and lanczos and box give different pixels for each one."""
    images = {}
    for name in ("lanczos", "box"):
        data = small_data(data_params, image_size=24, resize_filter=name)
        meta = tiny_imagenet.prepare(small_tiny_zip, tmp_path / name, data, workers=1)
        images[name] = arrays.load_split(tmp_path / name / "train.npz")[0]
        assert meta["resize_filter"] == name and images[name].shape[1:] == (24, 24, 3)
    assert all(not np.array_equal(a, b) for a, b in zip(images["lanczos"], images["box"]))


def _rewrite_zip(source, dest, drop=(), replace=None):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            if any(info.filename.endswith(d) for d in drop):
                continue
            data = src.read(info)
            if replace and info.filename.endswith(replace[0]):
                data = replace[1]
            out.writestr(info, data)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_wnids", "wnids.txt missing"),
        ("no_annotations", "val/val_annotations.txt missing"),
        ("bad_jpeg", "_3.JPEG: unreadable image"),
        ("truncated", "not a valid zip archive"),
        ("garbage", "not a valid zip archive"),
        ("too_many_classes", "n_classes: 13 requested but the source has only 12 classes"),
    ],
)
def test_bad_archives_fail_cleanly_through_the_cli(case, message, small_tiny_zip, tmp_path):
    archive = tmp_path / "bad.zip"
    params = ROOT / "params.yaml"
    if case == "no_wnids":
        _rewrite_zip(small_tiny_zip, archive, drop=["/wnids.txt"])
    elif case == "no_annotations":
        _rewrite_zip(small_tiny_zip, archive, drop=["val_annotations.txt"])
    elif case == "bad_jpeg":
        name = f"{sample.wnid(1)}_3.JPEG"
        _rewrite_zip(small_tiny_zip, archive, replace=(name, b"\xff\xd8\xff\xe0garbage"))
    elif case == "truncated":
        archive.write_bytes(small_tiny_zip.read_bytes()[: small_tiny_zip.stat().st_size // 2])
    elif case == "garbage":
        archive.write_bytes(b"this is not a zip file" * 100)
    else:
        archive = small_tiny_zip
    chosen = yaml.safe_load(params.read_text())
    chosen["data"]["imagenet200"]["n_classes"] = 13 if case == "too_many_classes" else 12
    write_params(tmp_path / "params.yaml", chosen)
    out = tmp_path / "prepared"
    result = run(["imgclf", "prepare", "imagenet200", "--source", str(archive), "--out", str(out),
                  "--params", str(tmp_path / "params.yaml"), "--threads", "2"], tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary directory left


def test_unsafe_member_names_are_rejected(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("tiny-imagenet-200/wnids.txt", "n1\n")
        out.writestr("../../etc/passwd", "x")
    with pytest.raises(PipelineError, match="unsafe path"):
        tiny_imagenet.read_tiny_index(archive)


def test_cifar_binary_parsing():
    rng = np.random.default_rng(0)
    records = sample.cifar_records(np.array([3, 7]), rng)
    images, labels = cifar10.parse_cifar_batch(records)
    assert labels.tolist() == [3, 7] and images.shape == (2, 32, 32, 3)
    raw = np.frombuffer(records, np.uint8)
    assert images[0, 0, 1, 0] == raw[1 + 1] and images[0, 0, 0, 2] == raw[1 + 2048]  # R plane, then B plane
    with pytest.raises(PipelineError, match="not a whole number"):
        cifar10.parse_cifar_batch(records[:-1])


def test_prepare_cifar10(tmp_path, data_params):
    archive = tmp_path / "cifar.tar.gz"
    sample.make_cifar10(archive)
    meta = cifar10.prepare(archive, tmp_path / "out", datasets.settings("cifar10", data_params))
    assert meta["train_images"] + meta["val_images"] == 1500 and meta["test_images"] == 500
    assert [w for w, _ in arrays.read_classes(tmp_path / "out" / "classes.tsv")][:2] == ["airplane", "automobile"]


def test_cifar_missing_batch(tmp_path, data_params):
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = 3073
        tar.addfile(info, io.BytesIO(b"\0" * 3073))
    with pytest.raises(PipelineError, match="missing .*test_batch.bin"):
        cifar10.prepare(archive, tmp_path / "out", datasets.settings("cifar10", data_params))


def test_image_folder_source(tmp_path, data_params):
    rng = np.random.default_rng(0)
    for c in range(4):
        folder = tmp_path / "images" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(20):
            size = (int(rng.integers(40, 300)), int(rng.integers(40, 300)))
            Image.fromarray(sample.class_image(c * 10, rng)).resize(size).save(folder / f"{i}.jpg")
    data = small_data(data_params, n_classes=3)
    meta = folder_source.prepare(tmp_path / "images", tmp_path / "out", data, workers=2)
    assert meta["n_classes"] == 3 and meta["test_images"] == 6
    assert meta["train_images"] + meta["val_images"] == 54
    assert arrays.load_split(tmp_path / "out" / "test.npz")[0].shape[1:] == (32, 32, 3)


def test_image_folder_with_train_and_val_trees(tmp_path, data_params):
    """The paper's route from full ImageNet: ``train/<wnid>/*`` + ``val/<wnid>/*``. The val tree is
    the test split (as Tiny ImageNet's val), the validation split is carved from train, and each
    image lands under its own class: class c's images are drawn in colour c, checked by pixels."""
    colours = {"n001": (250, 10, 10), "n002": (10, 250, 10), "n003": (10, 10, 250), "n004": (250, 250, 10)}
    counts = {"train": 12, "val": 3}
    for split, count in counts.items():
        for wnid, colour in colours.items():
            folder = tmp_path / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(count + (wnid == "n004")):  # one class a little larger
                Image.new("RGB", (64 + 9 * i, 48 + 5 * i), colour).save(folder / f"{wnid}_{i}.JPEG", quality=95)
    data = small_data(data_params, n_classes=3)
    data.update(class_selection="list", wnids=["n004", "n001", "n003"])
    meta = folder_source.prepare(tmp_path / "imagenet", tmp_path / "out", data, workers=2)
    classes = [line.split("\t")[1] for line in (tmp_path / "out" / "classes.tsv").read_text().splitlines()[1:]]
    assert classes == ["n001", "n003", "n004"] and meta["n_classes"] == 3
    splits = {name: arrays.load_split(tmp_path / "out" / f"{name}.npz") for name in ("train", "val", "test")}
    assert np.bincount(splits["test"][1]).tolist() == [3, 3, 4]  # exactly the val tree's images
    assert np.bincount(np.concatenate([splits["train"][1], splits["val"][1]])).tolist() == [12, 12, 13]
    assert set(splits["val"][1]) == {0, 1, 2}
    for images, labels in splits.values():
        assert images.shape[1:] == (32, 32, 3)
        expected = np.array([colours[classes[label]] for label in labels], np.float64)
        assert np.abs(images.reshape(len(images), -1, 3).mean(axis=1) - expected).max() < 6


@pytest.mark.parametrize("workers", [1, 3])
def test_prepare_decodes_in_as_many_processes_as_threads(small_tiny_zip, tmp_path, data_params, monkeypatch, workers):
    """``--threads`` sizes prepare's worker pool: each chunk of images records the process that
    decoded it; one worker decodes in the calling process, three in three forked processes. (A
    forked worker's chunk waits, 10 s at most, until another process has logged one, so that a worker
    forked first cannot take every chunk before the others start.)"""
    import os
    import time

    from imgclf import parallel

    parent = os.getpid()

    def logged_map(function, items, count):
        def recorded(item):
            with open(tmp_path / "pids", "a") as handle:
                handle.write(f"{os.getpid()}\n")
            deadline = time.monotonic() + 10
            while os.getpid() != parent and len(set((tmp_path / "pids").read_text().split())) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            return function(item)

        return parallel.fork_map(recorded, items, count)

    monkeypatch.setattr(common, "fork_map", logged_map)
    monkeypatch.setattr(common, "CHUNK", 16)
    tiny_imagenet.prepare(small_tiny_zip, tmp_path / "out", small_data(data_params), workers)
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) >= 10  # many chunks, so every worker gets some
    if workers == 1:
        assert set(pids) == {str(os.getpid())}
    else:
        assert 1 < len(set(pids)) <= workers and str(os.getpid()) not in pids


def test_split_file_bytes_are_stable(tmp_path):
    """The .npz bytes are pinned: a changed byte would change the prepared data's DVC hash and
    rerun every training stage downstream, though no number changed."""

    images = np.arange(500 * 32 * 32 * 3, dtype=np.uint64).astype(np.uint8).reshape(500, 32, 32, 3)
    arrays.save_split(tmp_path / "s.npz", images, np.arange(500, dtype=np.int32))
    assert digest(tmp_path / "s.npz") == "ffde75b2f2fc7b1230556b1401e4984c"
    loaded_images, loaded_labels = arrays.load_split(tmp_path / "s.npz")
    assert np.array_equal(loaded_images, images) and np.array_equal(loaded_labels, np.arange(500))


@pytest.mark.parametrize("position", ["middle", "last"])
def test_a_class_without_training_images_is_named(small_tiny_zip, tmp_path, data_params, position):
    """A selected class whose train/ folder is empty stops prepare with one line naming the class,
    wherever it sorts (the last one used to pass with 0 training images), and nothing is written."""
    wnids = sorted(tiny_imagenet.read_tiny_index(small_tiny_zip).wnids)
    empty = wnids[len(wnids) // 2] if position == "middle" else wnids[-1]
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(small_tiny_zip) as source, zipfile.ZipFile(archive, "w") as out:
        for info in source.infolist():
            if not info.filename.startswith(f"tiny-imagenet-200/train/{empty}/images/"):
                out.writestr(info, source.read(info))
    with pytest.raises(PipelineError, match=rf"^{archive}: train/: class {empty} has no images$"):
        tiny_imagenet.prepare(archive, tmp_path / "out", small_data(data_params), 1)
    assert not (tmp_path / "out").exists()


def test_a_class_without_test_images_is_named(tmp_path, data_params):
    for split, wnids in (("train", ["a", "b", "c"]), ("val", ["a", "c"])):
        for w in wnids:
            (tmp_path / "f" / split / w).mkdir(parents=True)
            for i in range(10 if split == "train" else 2):
                Image.new("RGB", (40, 40), (i * 20, 0, 0)).save(tmp_path / "f" / split / w / f"{i}.jpg")
    (tmp_path / "f" / "val" / "b").mkdir()  # the folder is there, its images are not
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'f' / 'val'}: class b has no images$"):
        folder_source.prepare(tmp_path / "f", tmp_path / "out", small_data(data_params, n_classes=3), 1)


def test_fork_map_keeps_order_and_raises_a_workers_error():
    """Results come back in the items' order whatever worker finished first; the function may
    close over unpicklable state (forked, not pickled); a worker's exception is raised here; a
    worker that dies without one is an error, not a hang."""
    import os
    import threading

    from imgclf import parallel

    lock = threading.Lock()  # unpicklable: a closure over it must still run in the workers
    assert parallel.fork_map(lambda i: (lock is not None) * i * i, list(range(40)), 3) == [i * i for i in range(40)]

    def failing(i):
        if i == 7:
            raise PipelineError(f"item {i} is bad")
        return i

    with pytest.raises(PipelineError, match="^item 7 is bad$"):
        parallel.fork_map(failing, list(range(20)), 2)

    def dying(i):
        if i == 3:
            os._exit(9)
        return i

    with pytest.raises(PipelineError, match="worker process died"):
        parallel.fork_map(dying, list(range(6)), 2)
