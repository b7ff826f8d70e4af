"""The MNIST-format layout (``mnist_idx``), on small IDX files generated here: a folder of the
four files (gzipped or not) or an archive of them is read into the prepared arrays, RGB at
``data.image_size``, with the class names of its source and the class subset of its data set;
what users get wrong is refused in one line naming the file; both engines prepare a folder source
alike and settle; Fashion-MNIST from Debian, where it is installed, is read and checked."""

import gzip
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import digest, file_hashes, load_params, make_project, run, snakemake_jobs, write_params
from imgclf import arrays, config, datasets, stages
from imgclf.errors import PipelineError
from imgclf.sources import mnist_idx, tree

NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
FASHION = "/usr/share/datasets/fashion-mnist"


def idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000080N, one big-endian size per dimension, the data."""
    return bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.astype(np.uint8).tobytes()


def make_files(classes=4, train_per_class=30, test_per_class=5, side=28, seed=0) -> dict[str, bytes]:
    """role -> IDX bytes: images whose class is their brightness band, so a class can be told from its pixels."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        images = (labels[:, None, None] * 50 + rng.integers(0, 40, (len(labels), side, side))).clip(0, 255)
        files[f"{split}_images"], files[f"{split}_labels"] = idx(images), idx(labels)
    return files


def write_folder(root: Path, files: dict[str, bytes], gz=("train_images", "test_labels"), prefix="") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for role, data in files.items():
        name = prefix + NAMES[role]
        if role in gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (root / name).write_bytes(data)
    return root


def settings(**changes) -> dict:
    """What prepare reads for imagenet200 from an mnist_idx source (``changes``: its keys replaced)."""
    data = config.validate({"data": {"sources": {"mine": {"path": "/x", "layout": "mnist_idx"}},
                                     "imagenet200": {"source": "mine"}}})["data"]
    return {**datasets.settings("imagenet200", data), "n_classes": 4, **changes}


def load_prepared(out: Path):
    meta = yaml.safe_load((out / "meta.json").read_text())
    splits = {split: arrays.load_split(out / f"{split}.npz") for split in arrays.SPLITS}
    classes = [line.split("\t")[1] for line in (out / "classes.tsv").read_text().splitlines()[1:]]
    return meta, splits, classes


@pytest.mark.parametrize("how", ["folder", "tar.gz", "zip"])
def test_a_folder_or_archive_becomes_rgb_arrays_with_the_sources_class_names(tmp_path, how):
    files = make_files()
    folder = write_folder(tmp_path / "files", files)
    source = folder
    if how == "tar.gz":
        source = tmp_path / "mnist.tar.gz"
        with tarfile.open(source, "w:gz") as archive:
            archive.add(folder, "fashion")
    elif how == "zip":
        source = tmp_path / "mnist.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for path in folder.iterdir():
                archive.write(path, f"gzip/{path.name}")
    names = ["zero", "one", "two", "three"]
    meta = mnist_idx.prepare(source, tmp_path / "out", settings(classes=names, image_size=32))
    meta, splits, classes = load_prepared(tmp_path / "out")
    assert classes == names and meta["n_classes"] == 4
    assert (meta["train_images"], meta["val_images"], meta["test_images"]) == (108, 12, 20)
    x_test, y_test = splits["test"]
    assert x_test.shape == (20, 32, 32, 3) and x_test.dtype == np.uint8
    assert (x_test[..., 0] == x_test[..., 2]).all()  # gray in all three channels
    # the test split is the t10k files in their order, each image resized (its mean keeps its class's band)
    labels = mnist_idx.parse_idx(files["test_labels"], "t", 1)
    images = mnist_idx.parse_idx(files["test_images"], "t", 3)
    assert (y_test == labels).all()
    assert np.abs(x_test.mean(axis=(1, 2, 3)) - images.mean(axis=(1, 2))).max() < 1.5
    assert sorted(np.bincount(splits["val"][1]).tolist()) == [3, 3, 3, 3]  # the carve is stratified


def test_without_class_names_the_labels_are_the_names_and_a_class_subset_keeps_label_order(tmp_path):
    folder = write_folder(tmp_path / "files", make_files(classes=6))
    mnist_idx.prepare(folder, tmp_path / "all", settings(n_classes=6))
    assert load_prepared(tmp_path / "all")[2] == ["0", "1", "2", "3", "4", "5"]
    mnist_idx.prepare(folder, tmp_path / "some", settings(class_selection="list", n_classes=3, wnids=["5", "1", "3"]))
    meta, splits, classes = load_prepared(tmp_path / "some")
    assert classes == ["1", "3", "5"] and meta["test_images"] == 15
    original = mnist_idx.parse_idx(make_files(classes=6)["test_labels"], "t", 1)
    assert (splits["test"][1] == np.array([-1, 0, -1, 1, -1, 2])[original[np.isin(original, [1, 3, 5])]]).all()
    mnist_idx.prepare(folder, tmp_path / "drawn", settings(n_classes=2, class_seed=3))
    assert len(load_prepared(tmp_path / "drawn")[2]) == 2


def test_the_prefix_picks_one_emnist_split_and_checksums_are_of_the_decompressed_bytes(tmp_path):
    balanced, letters = make_files(seed=1), make_files(seed=2)
    folder = write_folder(tmp_path / "emnist", balanced, prefix="emnist-balanced-", gz=())
    write_folder(folder, letters, prefix="emnist-letters-", gz=tuple(NAMES))
    md5 = {role: digest(data) for role, data in letters.items()}
    mnist_idx.prepare(folder, tmp_path / "out", settings(prefix="emnist-letters-", idx_md5=md5))
    assert (load_prepared(tmp_path / "out")[1]["test"][1] == mnist_idx.parse_idx(letters["test_labels"], "t", 1)).all()
    with pytest.raises(PipelineError, match=r"^.*emnist-balanced-train-images-idx3-ubyte: MD5 of its IDX bytes is "
                                            r"[0-9a-f]{32}, expected [0-9a-f]{32} \(idx_md5.train_images\)$"):
        mnist_idx.prepare(folder, tmp_path / "bad", settings(prefix="emnist-balanced-", idx_md5=md5))
    both = write_folder(tmp_path / "both", balanced, gz=())
    write_folder(both, balanced, gz=tuple(NAMES))  # the same files gzipped beside them
    with pytest.raises(PipelineError, match=r"^.*: 2 files for the train images: .*; keep one \(or set the source's prefix\)$"):
        mnist_idx.prepare(both, tmp_path / "x", settings())
    assert not (tmp_path / "bad").exists() and not (tmp_path / "x").exists()


def _truncate(data: bytes) -> bytes:
    return data[:-7]


BAD = {  # what is done to which file -> the one line that names it
    "magic": ("train_images", lambda d: b"\x08\x03\x00\x00" + d[4:], r"not an IDX file \(magic number 08030000, expected 00000803\)"),
    "data type": ("train_labels", lambda d: d[:2] + b"\x0d" + d[3:], r"IDX data type 0x0d, expected 0x08 \(unsigned bytes\)"),
    "dimensions": ("test_images", lambda d: idx(np.zeros((20, 784))), r"2 dimensions, expected 3 \(images\)"),
    "truncated": ("test_images", _truncate, r"truncated: 15,673 bytes of data, its header declares 20x28x28 = 15,680"),
    "too long": ("test_labels", lambda d: d + b"\x00", r"longer than its header says: 21 bytes of data, its header declares 20 = 20"),
    "truncated gzip": ("train_images", lambda d: gzip.compress(d)[:-100], r"truncated gzip file"),
    "counts": ("train_labels", lambda d: idx(np.zeros(119)), r"119 labels for the 120 images of .*train-images-idx3-ubyte"),
    "label out of range": ("train_labels", lambda d: d[:-1] + b"\x07", r"label 7 out of range: the source's classes name 4 \(labels 0..3\)"),
    "test label unseen": ("test_labels", lambda d: d[:-1] + b"\x05", r"label 5 out of range: no training image has it"),
    "empty": ("test_labels", lambda d: b"", r"not an IDX file \(magic number missing, expected 00000801\)"),
}


@pytest.mark.parametrize("fault", list(BAD))
def test_what_users_get_wrong_is_one_line_naming_the_file_and_no_output(tmp_path, fault):
    role, spoil, message = BAD[fault]
    files = make_files()
    files[role] = spoil(files[role])
    folder = write_folder(tmp_path / "files", files, gz=())
    if fault == "truncated gzip":
        (folder / NAMES[role]).rename(folder / f"{NAMES[role]}.gz")
    names = ["a", "b", "c", "d"]
    with pytest.raises(PipelineError) as raised:
        mnist_idx.prepare(folder, tmp_path / "out", settings(classes=names))
    text = str(raised.value)
    assert "\n" not in text and NAMES[role] in text and re.search(message + "$", text), text
    assert not (tmp_path / "out").exists()


def test_a_missing_file_or_folder_is_named_and_a_known_folder_says_how_to_install_it(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "files", make_files())
    (folder / f"{NAMES['test_labels']}.gz").unlink()
    with pytest.raises(PipelineError, match=rf"^{folder}: no test labels file \(t10k-labels-idx1-ubyte\[.gz\]\)$"):
        mnist_idx.prepare(folder, tmp_path / "out", settings())
    gone = tmp_path / "gone"
    monkeypatch.setitem(tree.MISSING_HINTS, str(gone), "install Debian's package: apt-get install dataset-fashion-mnist")
    with pytest.raises(PipelineError, match=rf"^{gone}: not found \(install Debian's package: apt-get install dataset-fashion-mnist\)$"):
        mnist_idx.prepare(gone, tmp_path / "out", settings())
    params = config.validate({"data": {"sources": {"mine": {"path": str(gone), "layout": "mnist_idx"}},
                                       "imagenet200": {"source": "mine"}}})
    with pytest.raises(PipelineError, match=r"data.sources.mine.path: .*gone does not exist \(install Debian's package: "
                                            r"apt-get install dataset-fashion-mnist\)$"):
        stages.source_listings(params, "params.yaml")


def test_the_cli_exits_2_with_one_line(tmp_path):
    files = make_files()
    files["train_labels"] = idx(np.zeros(5))
    folder = write_folder(tmp_path / "files", files)
    params = load_params()
    params["data"]["sources"] = {"mine": {"path": str(folder), "layout": "mnist_idx"}}
    params["data"]["imagenet200"] = {"source": "mine", "n_classes": 4}
    write_params(tmp_path / "params.yaml", params)
    result = run(["imgclf", "prepare", "imagenet200", "--source", str(folder), "--out", "out", "--params", "params.yaml"],
                 tmp_path, check=False)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.splitlines() == [f"error: {folder}/{NAMES['train_labels']}: 5 labels for the 120 images of "
                                          f"{folder}/{NAMES['train_images']}.gz"]


@pytest.mark.parametrize("entry, message", [
    ({"url": "https://x/m.tar.gz", "layout": "mnist_idx"}, "an archive source needs md5 and size (to verify what is "
     "downloaded), a folder a path and neither"),
    ({"path": "/x", "md5": "0" * 32, "layout": "mnist_idx"}, "an archive source needs md5 and size"),
    ({"path": "/x", "layout": "folder", "classes": ["a", "b"]}, "data.sources.mine.classes: layout 'folder' does not read it"),
    ({"path": "/data/$(touch PWNED)", "layout": "mnist_idx"}, "data.sources.mine.path: '/data/$(touch PWNED)' does not match"),
    ({"path": "/data/a\"b", "layout": "folder"}, "data.sources.mine.path:"),
    ({"url": "https://x/t.zip", "md5": "0" * 32, "size": 9, "layout": "tiny_imagenet_zip", "idx_md5": {}},
     "data.sources.mine.idx_md5: layout 'tiny_imagenet_zip' does not read it"),
])
def test_a_source_entry_is_checked(entry, message):
    with pytest.raises(PipelineError) as raised:
        config.validate({"data": {"sources": {"mine": entry}, "imagenet200": {"source": "mine"}}})
    assert str(raised.value).startswith("params.yaml: data.sources.mine") and message in str(raised.value)


def test_cifar10_keeps_a_class_subset_in_the_sources_label_order(tmp_path, data_params):
    from imgclf import sample
    from imgclf.sources import cifar10

    archive = tmp_path / "cifar.tar.gz"
    sample.make_cifar10(archive)
    everything = cifar10.prepare(archive, tmp_path / "all", datasets.settings("cifar10", data_params))
    data_params["cifar10"].update(class_selection="list", n_classes=3, wnids=["truck", "cat", "airplane"])
    some = cifar10.prepare(archive, tmp_path / "some", datasets.settings("cifar10", data_params))
    assert [w for w, _ in arrays.read_classes(tmp_path / "some" / "classes.tsv")] == ["airplane", "cat", "truck"]
    x_all, y_all = arrays.load_split(tmp_path / "all" / "test.npz")
    x_some, y_some = arrays.load_split(tmp_path / "some" / "test.npz")
    kept = np.isin(y_all, [0, 3, 9])  # airplane, cat, truck in CIFAR-10's label order
    assert (y_some == np.array([0, -1, -1, 1, -1, -1, -1, -1, -1, 2])[y_all[kept]]).all()
    assert (x_some == x_all[kept]).all() and some["test_images"] == kept.sum() < everything["test_images"]


def test_class_names_and_wnids_are_checked_against_the_sources_classes():
    def check(**subset):
        config.validate({"data": {"sources": {"mine": {"path": "/x", "layout": "mnist_idx", "classes": ["a", "b", "c"]}},
                                  "cifar10": {"source": "mine", **subset}}, "experiments": ["cifar_base_cnn"]})

    check(n_classes=2, class_selection="list", wnids=["c", "a"])
    with pytest.raises(PipelineError, match=r"data.cifar10.wnids: 'z' is not one of source mine's classes$"):
        check(n_classes=2, class_selection="list", wnids=["a", "z"])
    with pytest.raises(PipelineError, match=r"data.cifar10.n_classes: 10 but source mine names 3 classes$"):
        check()
    with pytest.raises(PipelineError, match=r"data.sources.mine.classes.1: .* does not match"):
        config.validate({"data": {"sources": {"mine": {"path": "/x", "layout": "mnist_idx", "classes": ["a", "b\tc"]}}}})


def test_published_figures_follow_the_datas_identity_not_the_sources_name():
    import pandas as pd

    from imgclf import report

    table = pd.DataFrame([{"source": "fashion_mnist", "dataset": "imagenet200", "chance_top1": 0.2},
                          {"source": "mine", "dataset": "cifar10", "chance_top1": 0.1}])
    builtin = datasets.BUILTIN_SOURCES["fashion_mnist"]
    params = {"data": {"sources": {"fashion_mnist": builtin, "mine": {**builtin, "idx_md5": {}}}}}
    text = report.published(table, params)
    assert "## Published figures on fashion_mnist" in text and "mine" not in text
    assert "| WRN-28-10 + random erasing | 96.30 |" in text and "keep imagenet200: 5 classes" in text
    params["data"]["sources"]["fashion_mnist"] = {**builtin, "idx_md5": {"test_images": "0" * 32}}  # other data, same name
    assert report.published(table, params) == ""


def test_a_folder_source_is_prepared_in_place_and_an_archive_downloaded_first():
    def table(entry):
        params = config.validate({"experiments": ["cifar_base_cnn"],
                                  "data": {"sources": {"mine": entry}, "cifar10": {"source": "mine", "n_classes": 5}}})
        return {stage.name: stage for stage in stages.stage_list(params)}, params

    folder, params = table({"path": "/data/fashion", "layout": "mnist_idx"})
    assert "download@cifar10" not in folder
    assert folder["prepare@cifar10"].deps == ["/data/fashion"]  # hashed by both engines: its changes rerun prepare
    keys = stages.stage_keys(params)["config/resolved/prepare/cifar10.json"]
    assert {"data.cifar10.n_classes", "data.sources.mine.classes", "data.sources.mine.idx_md5"} <= set(keys)
    archive, params = table({"url": "https://x/m.tar.gz", "md5": "0" * 32, "size": 9, "layout": "mnist_idx"})
    assert archive["download@cifar10"].outs == ["data/raw/cifar10.archive"]
    assert archive["prepare@cifar10"].deps == ["data/raw/cifar10.archive"]
    # the class names are prepare's, not the download's: renaming a class downloads nothing again
    assert stages.stage_keys(params)["config/resolved/download/cifar10.json"] == [
        "data.cifar10.source", "data.sources.mine.url", "data.sources.mine.md5", "data.sources.mine.size",
        "data.sources.mine.layout"]


def test_snakemake_records_a_folder_sources_content(tmp_path, monkeypatch):
    """Snakemake's input for a folder read in place is its listing file, rewritten only when the
    files' content changes (not their times): one byte changed with the old time put back is seen."""
    monkeypatch.chdir(tmp_path)
    folder = write_folder(tmp_path / "files", make_files())
    params = config.validate({"experiments": ["seed_cnn"], "data": {"sources": {"mine": {"path": str(folder), "layout": "mnist_idx"}},
                                                                    "imagenet200": {"source": "mine", "n_classes": 4}}})
    listing = Path(stages.write_listings(params, stages.source_listings(params, "params.yaml"))["imagenet200"])
    assert listing == Path(".snakemake/listings/imagenet200")
    os.utime(listing, ns=(0, 0))
    for path in folder.iterdir():
        os.utime(path, ns=(10**18, 10**18))
    stages.write_listings(params, stages.source_listings(params, "params.yaml"))
    assert listing.stat().st_mtime_ns == 0  # the same content: the record keeps its time
    listing.unlink()  # written anew (.snakemake removed): the newest file's time, newer than no output
    stages.write_listings(params, stages.source_listings(params, "params.yaml"))
    assert listing.stat().st_mtime_ns == 10**18
    path = folder / NAMES["train_labels"]
    mtime = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    os.utime(path, ns=(mtime, mtime))
    stages.write_listings(params, stages.source_listings(params, "params.yaml"))
    assert listing.stat().st_mtime_ns > 0


@pytest.fixture(scope="module")
def engines(module_tmp):
    """A folder source with gzipped and plain files, prepared by each engine in its own project."""
    folder = write_folder(module_tmp / "My Photos; #x", make_files(classes=5, train_per_class=40))  # read literally
    made = []
    for engine in ("smk", "dvc"):
        params = load_params()
        params["experiments"] = ["seed_cnn"]
        params["seed_cnn"]["seeds"] = [0]
        params["data"]["sources"] = {"mine": {"path": str(folder), "layout": "mnist_idx",
                                              "classes": ["a", "b", "c", "d", "e"]}}
        params["data"]["imagenet200"] = {"source": "mine", "n_classes": 5}
        made.append(make_project(module_tmp / engine, params))
    smk, dvc = made
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200"], smk)
    run(["dvc", "repro", "prepare@imagenet200"], dvc)
    return folder, smk, dvc


@pytest.mark.slow
def test_both_engines_prepare_a_folder_source_alike_and_settle(engines):
    folder, smk, dvc = engines
    assert file_hashes(smk, "data/prepared") == file_hashes(dvc, "data/prepared")
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {}
    assert "prepare@imagenet200" not in run(["dvc", "status", "prepare@imagenet200"], dvc).stdout
    # a file rewritten with other bytes reruns prepare in both, even when its old time is put back
    # (cp -p, tar x, rsync -a and a package upgrade keep the times they were given)
    times = {path: path.stat().st_mtime_ns for path in folder.iterdir()}
    write_folder(folder, make_files(classes=5, train_per_class=40, seed=9))
    for path, mtime in times.items():
        os.utime(path, ns=(mtime, mtime))
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {"prepare": 1}
    assert "prepare@imagenet200" in run(["dvc", "status", "prepare@imagenet200"], dvc).stdout
    # a link out of the folder stops Snakemake in one line naming it
    (folder / "elsewhere").symlink_to(folder.parent)
    try:
        result = run(["snakemake", "--dry-run", "--cores", "1"], smk, check=False)
        assert result.returncode != 0 and f"{folder}: elsewhere: link leaves the folder" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    finally:
        (folder / "elsewhere").unlink()


@pytest.fixture
def fashion():
    """Debian's Fashion-MNIST: CI installs it (and requires it: IMGCLF_REQUIRE_FASHION); elsewhere
    the tests that read it are skipped without it."""
    if not Path(FASHION).is_dir():
        if os.environ.get("IMGCLF_REQUIRE_FASHION"):
            pytest.fail(f"IMGCLF_REQUIRE_FASHION is set but {FASHION} is missing (apt-get install dataset-fashion-mnist)")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    return Path(FASHION)


def test_debians_fashion_mnist_is_the_builtin_source_and_its_checksums_hold(fashion, tmp_path):
    """CI installs the package: the built-in source reads it, every checksum holds, and the class
    subsets of the two data sets split its ten classes."""
    data = config.validate({"data": {"imagenet200": {"source": "fashion_mnist", "n_classes": 10}}})["data"]
    meta = mnist_idx.prepare(FASHION, tmp_path / "out", datasets.settings("imagenet200", data))
    assert (meta["train_images"], meta["val_images"], meta["test_images"]) == (54000, 6000, 10000)
    classes = load_prepared(tmp_path / "out")[2]
    assert classes == datasets.BUILTIN_SOURCES["fashion_mnist"]["classes"]
    # upstream's gzip files differ byte-wise from Debian's; their decompressed bytes are what is checked
    copy = tmp_path / "plain"
    copy.mkdir()
    for path in Path(FASHION).iterdir():
        (copy / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    files = mnist_idx.read_files(copy)
    assert {role: digest(data) for role, (_, data) in files.items()} == \
        datasets.BUILTIN_SOURCES["fashion_mnist"]["idx_md5"]


@pytest.mark.slow
def test_a_short_real_data_run_learns_alike_under_both_engines_and_settles(fashion, tmp_path):
    """The fashion profile cut to seed_cnn for 2 epochs: both engines train the same weights byte for
    byte on the real images, the model learns, the report shows the published figures as such, and
    after the run neither engine has anything left to do."""
    params = load_params("config/fashion.yaml")
    params["experiments"] = ["seed_cnn"]
    params["seed_cnn"].update(epochs=2, seeds=[0])
    smk, dvc = make_project(tmp_path / "smk", params), make_project(tmp_path / "dvc", params)
    run(["snakemake", "--cores", "2"], smk, timeout=1200)
    run(["dvc", "repro"], dvc, timeout=1200)
    assert file_hashes(smk, "models") == file_hashes(dvc, "models")
    assert file_hashes(smk, "reports/metrics") == file_hashes(dvc, "reports/metrics")
    metrics = json.loads((smk / "reports/metrics/seed_cnn/seed0.json").read_text())
    assert metrics["chance_top1"] == 0.2 and metrics["top1"] >= 0.8, metrics  # 5 classes; 2 epochs reach 0.88 or so
    results = (smk / "reports/results.md").read_text()
    assert "imagenet200 (fashion_mnist)" in results and "## Published figures on fashion_mnist" in results
    assert "| ResNet-18 | 94.90 |" in results and "imagenet200: 5 classes" in results
    assert snakemake_jobs(smk) == {}
    for project in (smk, dvc):
        assert run(["dvc", "status"], project).stdout.strip() == "Data and pipelines are up to date."
