"""A folder source (``layout: folder``) reads regular files inside its tree and nothing else, in
``imgclf prepare``, in ``imgclf check-params`` and in both engines: what it refuses is one line
naming the entry, before any output is touched; a folder that changes reruns prepare; a folder
that does not exist is refused by name."""

import os
import re
import socket

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import dvc_stages_to_run, dvc_up_to_date, edit_params, file_hashes, load_params, make_project, run, snakemake_jobs, write_params
from imgclf import decode, sample
from imgclf.errors import PipelineError
from imgclf.sources import common, tree

PREPARED = "data/prepared/imagenet200"


def image_tree(root, classes=4, per_class=20, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(sample.class_image(c * 7, rng)).save(folder / f"{i}.JPEG", quality=90)
    return root


def hostile(kind, root, outside):
    """Put one entry a folder source must refuse into ``root``; return its name as printed."""
    (outside / "elsewhere").mkdir(exist_ok=True)
    image_tree(outside / "elsewhere", classes=1, per_class=1)
    if kind == "link to a file outside":
        os.symlink(outside / "elsewhere" / "class0" / "0.JPEG", root / "class0" / "x.JPEG")
        return "class0/x.JPEG"
    if kind == "link to a folder outside":
        os.symlink(outside / "elsewhere" / "class0", root / "class9")
        return "class9"
    if kind == "link to /dev/zero":
        os.symlink("/dev/zero", root / "class1" / "z.JPEG")
        return "class1/z.JPEG"
    if kind == "FIFO":
        os.mkfifo(root / "class2" / "pipe.JPEG")
        return "class2/pipe.JPEG"
    if kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(root / "class2" / "s.JPEG"))
        listener.close()
        return "class2/s.JPEG"
    name = os.fsdecode(b"class3/\xffbad.JPEG")  # not UTF-8
    os.link(root / "class3" / "0.JPEG", root / name)
    return "class3/\\xffbad.JPEG"


KINDS = ["link to a file outside", "link to a folder outside", "link to /dev/zero", "FIFO", "socket", "name not UTF-8"]
WHY = {"link to a file outside": "link leaves the folder", "link to a folder outside": "link leaves the folder",
       "link to /dev/zero": "link leaves the folder", "FIFO": r"not a regular file \(a FIFO\)",
       "socket": r"not a regular file \(a socket\)", "name not UTF-8": "file name is not valid UTF-8"}


@pytest.mark.parametrize("kind", KINDS)
def test_the_scan_refuses_what_is_not_a_regular_file_inside_the_tree(tmp_path, kind):
    root = image_tree(tmp_path / "tree")
    name = hostile(kind, root, tmp_path)
    with pytest.raises(PipelineError, match=rf"^{root}: {name.replace(chr(92), chr(92) * 2)}: {WHY[kind]}"):
        tree.scan(root)


def test_links_inside_the_tree_are_followed_and_a_loop_is_read_once(tmp_path):
    root = image_tree(tmp_path / "tree", classes=2, per_class=2)
    os.symlink(root / "class0" / "0.JPEG", root / "class1" / "copy.JPEG")
    os.symlink(root, root / "class1" / "loop")  # back to the top: read once, no endless walk
    names = [name for name, _, _ in tree.scan(root)]
    assert names == ["class0/0.JPEG", "class0/1.JPEG", "class1/0.JPEG", "class1/1.JPEG", "class1/copy.JPEG"]
    before = tree.listing_digest(root)
    (root / "class0" / "2.JPEG").write_bytes((root / "class0" / "0.JPEG").read_bytes())
    assert tree.listing_digest(root) != before


def test_a_read_is_bounded_whatever_the_size_claims(tmp_path):
    """A device reads as size 0 and without end: refused without reading; a file over the limit
    stops at the limit."""
    files = common.FolderFiles("/dev", max_member_bytes=1000)
    with pytest.raises(OSError, match="not a regular file"):
        files.read("zero")
    (tmp_path / "big.JPEG").write_bytes(b"\xff\xd8" + b"x" * 5000)
    with pytest.raises(Exception, match=r"more than data.max_image_bytes \(1,000\)"):
        common.FolderFiles(tmp_path, max_member_bytes=1000).read("big.JPEG")


@pytest.mark.parametrize("data, expected", [
    (b"", "empty file"),
    (b"<!DOCTYPE html><html>", r"not a JPEG, PNG or other image format \(it starts with b'<!DOCTYP'\)"),
    ("jpeg-half", "truncated JPEG"),
    ("png-half", "truncated PNG"),
    ("gif-half", "truncated GIF"),
    ("webp-half", "corrupt WebP: could not create decoder object"),
    ("jpeg-scrambled", "corrupt JPEG: cannot identify image file"),  # its end marker in place: not cut short
    ("png-scrambled", "corrupt PNG: cannot identify image file"),
])
def test_an_undecodable_image_says_what_is_wrong(data, expected):
    import io

    if isinstance(data, str):
        kind, damage = data.split("-")
        buffer = io.BytesIO()
        Image.fromarray(sample.class_image(3, np.random.default_rng(0))).save(buffer, kind.upper())
        data = buffer.getvalue()
        # half the file, or its middle inverted (the first 40 bytes and last 20, signature and end, kept)
        data = data[: len(data) // 2] if damage == "half" else data[:40] + bytes(b ^ 0xFF for b in data[40:-20]) + data[-20:]
    with pytest.raises(Exception) as raised:
        decode.decode_resize(data, decode.ResizeSpec(32))
    message = decode.what_is_wrong(data, raised.value)
    assert re.fullmatch(expected, message), message
    assert " at 0x" not in message


def _params(root, path, profile="params.yaml"):
    params = load_params(profile)
    params["data"].setdefault("sources", {})["mine"] = {"path": str(path), "layout": "folder"}
    params["data"]["imagenet200"].update(source="mine", n_classes=4)
    params["experiments"] = ["seed_cnn"]
    write_params(root / "params.yaml", params)
    return root / "params.yaml"


def test_prepare_and_check_params_refuse_in_one_line(tmp_path):
    """The CLI: a name that is not UTF-8 is shown escaped, exit 2, no output; a folder that does
    not exist is refused by check-params, naming the key."""
    root = image_tree(tmp_path / "tree")
    hostile("name not UTF-8", root, tmp_path)
    params = _params(tmp_path, root)
    out = tmp_path / "prepared"
    for command in (["prepare", "imagenet200", "--source", str(root), "--out", str(out)], ["check-params"]):
        result = run(["imgclf", *command, "--params", str(params)], tmp_path, check=False)
        assert result.returncode == 2 and not out.exists()
        assert result.stderr.splitlines() == [f"error: {root}: class3/\\xffbad.JPEG: file name is not valid UTF-8"]
    params = _params(tmp_path, "/does/not/exist")
    result = run(["imgclf", "check-params", "--params", str(params)], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {params}: data.sources.mine.path: /does/not/exist does not exist"]


@pytest.fixture(scope="module")
def projects(module_tmp):
    # a name that would end the command and run another if a shell saw it unquoted: read literally
    root = image_tree(module_tmp / "images" / "tree --out h7out --params params.yaml;touch PWNED;#")
    made = []
    for engine in ("smk", "dvc"):
        project = make_project(module_tmp / engine)
        _params(project, root)
        run(["imgclf", "runs"], project)
        made.append(project)
    smk, dvc = made
    run(["snakemake", "--cores", "2", PREPARED], smk)
    run(["dvc", "repro", "prepare_folder@imagenet200"], dvc)
    return root, smk, dvc


def _meta(project):
    return yaml.safe_load((project / PREPARED / "meta.json").read_text())


@pytest.mark.slow
def test_both_engines_prepare_the_folder_and_record_its_source(projects):
    root, smk, dvc = projects
    assert file_hashes(smk, PREPARED) == file_hashes(dvc, PREPARED)
    assert _meta(smk)["source"] == "mine" and _meta(smk)["n_classes"] == 4
    assert not any((project / name).exists() for project in (smk, dvc) for name in ("PWNED", "h7out"))


@pytest.mark.slow
def test_a_changed_folder_reruns_prepare_in_both_engines(projects):
    """Both engines plan nothing for an unchanged folder and prepare for a changed one."""
    root, smk, dvc = projects
    assert snakemake_jobs(smk, PREPARED) == {}
    assert dvc_stages_to_run(dvc, "prepare_folder@imagenet200") == set()
    before = file_hashes(dvc, PREPARED)
    images = _meta(smk)["train_images"] + _meta(smk)["val_images"] + _meta(smk)["test_images"]
    for i in range(20, 25):
        (root / "class0" / f"{i}.JPEG").write_bytes((root / "class1" / f"{i - 20}.JPEG").read_bytes())
    assert snakemake_jobs(smk, PREPARED) == {"prepare": 1}
    assert dvc_stages_to_run(dvc, "prepare_folder@imagenet200") == {"prepare_folder@imagenet200"}
    run(["snakemake", "--cores", "2", PREPARED], smk)
    run(["dvc", "repro", "prepare_folder@imagenet200"], dvc)
    assert file_hashes(smk, PREPARED) == file_hashes(dvc, PREPARED) != before
    assert sum(_meta(dvc)[f"{split}_images"] for split in ("train", "val", "test")) == images + 5


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["link to /dev/zero", "name not UTF-8", "link to a file outside"])
def test_a_bad_entry_stops_both_engines_before_any_output_is_touched(projects, tmp_path, kind):
    root, smk, dvc = projects
    name = hostile(kind, root, tmp_path)
    try:
        kept = {project: file_hashes(project, PREPARED) for project in (smk, dvc)}
        # DVC would follow the link or wait on the device while hashing the folder: make dvc-run checks it first
        results = [run(["snakemake", "--cores", "2", PREPARED], smk, check=False, timeout=120),
                   run(["make", "-s", "dvc-run", "STAMP="], dvc, check=False, timeout=120)]
        for project, result in zip((smk, dvc), results):
            assert result.returncode != 0
            lines = [line for line in (result.stdout + result.stderr).splitlines() if f"{root}: {name}: " in line]
            assert lines and all(line.endswith(WHY[kind].replace("\\", "")) or "link leaves" in line for line in lines)
            assert file_hashes(project, PREPARED) == kept[project]
    finally:
        entry = root / os.fsdecode(name.replace("\\xff", "\udcff").encode("utf-8", "surrogateescape"))
        entry.unlink()


@pytest.mark.slow
def test_a_missing_folder_is_refused_by_both_engines_by_its_key(projects):
    root, smk, dvc = projects

    def point_at(project, path):
        edit_params(project / "params.yaml", {"data.sources.mine.path": str(path)})

    for project in (smk, dvc):
        point_at(project, "/does/not/exist")
    try:
        kept = {project: file_hashes(project, PREPARED) for project in (smk, dvc)}
        expected = "params.yaml: data.sources.mine.path: /does/not/exist does not exist"
        results = [run(["snakemake", "--cores", "2"], smk, check=False), run(["dvc", "repro"], dvc, check=False)]
        for project, result in zip((smk, dvc), results):
            assert result.returncode != 0 and expected in result.stdout + result.stderr
            assert file_hashes(project, PREPARED) == kept[project]
        assert not (smk / "reports/results.md").exists() and not (dvc / "reports/results.md").exists()
    finally:
        for project in (smk, dvc):
            point_at(project, root)


@pytest.mark.slow
def test_a_folder_source_settles_in_both_engines(tmp_path):
    """After `dvc repro` of the whole pipeline on a folder source, `dvc status` is clean, make sync
    works and Snakemake has nothing to do; a changed folder is noticed by both."""
    root = image_tree(tmp_path / "tree")
    project = make_project(tmp_path / "p")
    params = yaml.safe_load(_params(project, root, "config/ci.yaml").read_text())
    params["seed_cnn"]["seeds"] = [0]
    write_params(project / "params.yaml", params)
    run(["imgclf", "runs"], project)
    run(["dvc", "repro"], project, timeout=900)
    assert dvc_up_to_date(project)
    run(["make", "-s", "sync", "STAMP="], project, timeout=300)
    assert snakemake_jobs(project) == {} and dvc_stages_to_run(project) == set()
    (root / "class0" / "20.JPEG").write_bytes((root / "class1" / "0.JPEG").read_bytes())
    assert "prepare_folder@imagenet200" in dvc_stages_to_run(project)
    assert snakemake_jobs(project).get("prepare") == 1
