"""Faults while writing: a full disk ends in one line naming the output and leaves nothing that
looks complete; temporaries of killed runs are removed by the next run of the same output."""

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import ROOT, run, write_params
from imgclf import arrays, config, io_utils
from imgclf.errors import PipelineError


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_runs_are_removed(tmp_path):
    dead, alive = _dead_pid(), subprocess.Popen(["sleep", "30"])
    try:
        stale_dir = tmp_path / f".out.{dead}.abc"
        stale_dir.mkdir()
        (stale_dir / "train.npz").write_bytes(b"half")
        stale_file = tmp_path / f".m.json.{dead}.x1.tmp"
        stale_file.write_text("{")
        live = tmp_path / f".out.{alive.pid}.def"  # another process still writing: left alone
        live.mkdir()
        other = tmp_path / f".other.{dead}.ghi"  # another output's temporary: not this run's business
        other.mkdir()
        with io_utils.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a").write_text("x")
        io_utils.write_json(tmp_path / "m.json", {"a": 1})
        assert not stale_dir.exists() and not stale_file.exists()
        assert live.exists() and other.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, live.name, "m.json", "out"])
    finally:
        alive.kill()


def test_a_zombie_writer_counts_as_gone(tmp_path):
    """A killed stage whose engine died with it stays a zombie where PID 1 reaps no orphans (as in
    CI's container): its temporary is stale although a signal to its PID still succeeds."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not waited for: a zombie
    try:
        for _ in range(200):
            if open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)
        os.kill(zombie.pid, 0)  # still there for signals
        stale = tmp_path / f".m.json.{zombie.pid}.x1.tmp"
        stale.write_text("{")
        io_utils.write_json(tmp_path / "m.json", {"a": 1})
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
    finally:
        zombie.wait()


@pytest.mark.parametrize("shell", ["dash", "bash", "sh"])
def test_the_launcher_is_found_through_the_shell_dvc_runs(shell):
    """A stage's command runs under ``$SHELL -c`` with DVC_STAGE set: dash stays between DVC (here:
    this test's process) and the stage, and the chain passes over it; bash runs a lone command in
    its place. Whatever /bin/sh is, the chain ends at the launcher through shells only."""
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"no {shell} here")
    code = "import json; from imgclf.cli import launcher_chain; print(json.dumps(launcher_chain()))"
    out = subprocess.run([path, "-c", f"{sys.executable} -c '{code}'"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "DVC_STAGE": "train@x"}).stdout
    chain = json.loads(out)
    assert chain[-1][1] == os.getpid()
    assert all(child == parent for (_, parent), (child, _) in zip(chain, chain[1:]))
    if shell != "sh":
        assert len(chain) == {"dash": 2, "bash": 1}[shell]
    # without DVC's environment nothing counts as its shell
    out = subprocess.run([path, "-c", f"{sys.executable} -c '{code}'"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize("exchange", [True, False])
def test_a_directory_output_is_swapped_not_deleted_first(tmp_path, monkeypatch, exchange):
    """The old output stays in place until the new one replaces it: at the moment of the swap
    (here observed through os.replace / renameat2) ``out`` still holds the old files, and after
    it only the new ones remain, with no temporary left."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    seen = []
    real_exchange, real_replace = io_utils._exchange, os.replace

    def spy_exchange(a, b):
        seen.append(sorted(p.name for p in out.iterdir()))
        return real_exchange(a, b) if exchange else False

    def spy_replace(a, b):
        seen.append(sorted(p.name for p in out.iterdir()) if out.exists() else None)
        return real_replace(a, b)

    monkeypatch.setattr(io_utils, "_exchange", spy_exchange)
    monkeypatch.setattr(io_utils.os, "replace", spy_replace)
    with io_utils.atomic_dir(out) as tmp:
        (tmp / "new").write_text("new")
    assert seen[0] == ["old"]
    if exchange:
        assert seen == [["old"]]  # one atomic swap, no rename
    assert sorted(p.name for p in out.iterdir()) == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tidy_removes_stale_temporaries_of_every_output(tmp_path, monkeypatch, capsys):
    """``imgclf tidy`` (called in this process) removes what killed runs left beside the stage
    outputs, and a partial download no selected source resumes from; nothing else."""
    from conftest import make_project
    from imgclf import cli, datasets, paths

    project = make_project(tmp_path / "p")
    dead = _dead_pid()
    stale = [project / f"data/prepared/.imagenet200.{dead}.x", project / f"models/seed_cnn/.seed0.{dead}.y",
             project / f"reports/metrics/seed_cnn/.seed0.json.{dead}.z.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if not path.name.endswith(".tmp") else path.write_text("{")
    source = datasets.source_of("imagenet200", config.load(project / "params.yaml")["data"])[1]
    resumed = project / paths.partial_download(paths.raw_archive("imagenet200", ".zip"), source["md5"])
    other = project / paths.partial_download(paths.raw_archive("imagenet200", ".zip"), "0" * 32)
    for part in (resumed, other):
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"x")
    stale.append(other)
    keep = [project / "models/seed_cnn/notes.txt", project / f"models/seed_cnn/.seed0.{os.getpid()}.y", resumed]
    for path in keep[:2]:
        path.write_text("mine")
    monkeypatch.chdir(project)
    assert cli.main(["tidy"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(
        f"removed {p.relative_to(project)} (left by a killed run)" for p in stale)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


def test_disk_full_names_the_output_and_leaves_nothing(tmp_path, monkeypatch):
    def full(path, images, labels):
        with open(path, "wb") as handle:
            handle.write(b"part of an array")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(arrays, "save_split", full)
    from imgclf.sources import common

    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'out'}: no space left on device$"):
        common.write_prepared(tmp_path / "out", {s: (np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1, np.int32))
                                                  for s in arrays.SPLITS}, ["a"], ["a"],
                              {"source": "folder", "image_size": 2, "resize_filter": "box"})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'x.json'}: no space left on device$"):
        with io_utils.atomic_path(tmp_path / "x.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def _twelve_class_params(path):
    """params.yaml for the 12-class test zip (conftest's small_tiny_zip)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["imagenet200"]["n_classes"] = 12
    write_params(path, params)


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], tmp_path, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?): the injected ENOSPC test covers the code path")
    yield mount
    run(["umount", str(mount)], tmp_path, check=False)


def test_prepare_onto_a_full_disk(small_tmpfs, small_tiny_zip, tmp_path):
    """A real 256 KiB tmpfs: prepare's arrays do not fit. One line, exit 2, the mount left empty."""
    _twelve_class_params(tmp_path / "params.yaml")
    result = run(["imgclf", "prepare", "imagenet200", "--source", str(small_tiny_zip), "--out",
                  str(small_tmpfs / "prepared"), "--params", str(tmp_path / "params.yaml"), "--threads", "1"],
                 tmp_path, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {small_tmpfs / 'prepared'}: no space left on device"
    assert list(small_tmpfs.iterdir()) == []


def _peak_rss_kib(args, cwd) -> tuple[int, str, int]:
    """Run the CLI in a fresh interpreter; its exit status, stderr and peak RSS (KiB)."""
    code = ("import resource, sys\nfrom imgclf.cli import main\nrc = main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)")
    result = run([sys.executable, "-c", code, *args], cwd, check=False)
    return result.returncode, result.stderr, int(result.stdout.split()[-1])


@pytest.mark.parametrize("bomb", ["zeros", "trailing"])
def test_memory_is_bounded_by_what_a_member_declares(small_tiny_zip, tmp_path, bomb):
    """A member that inflates to 1 GiB of zeros, or a valid JPEG followed by 200 MiB of zeros, is
    refused by its declared size before it is inflated: one line naming it, and prepare's peak RSS
    within 2x that of a normal run on the same archive."""
    import zipfile

    _twelve_class_params(tmp_path / "params.yaml")
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(small_tiny_zip) as source, zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        victim = next(n for n in source.namelist() if "/train/" in n and n.endswith("_3.JPEG"))
        for info in source.infolist():
            if info.filename != victim:
                out.writestr(info, source.read(info))
        with out.open(victim, "w", force_zip64=True) as member:
            if bomb == "trailing":
                member.write(source.read(victim))
            for _ in range(1024 if bomb == "zeros" else 200):
                member.write(bytes(1 << 20))
    args = ["prepare", "imagenet200", "--out", str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml"),
            "--threads", "1", "--source"]
    rc, _, normal = _peak_rss_kib([*args, str(small_tiny_zip)], tmp_path)
    assert rc == 0
    rc, stderr, peak = _peak_rss_kib([*args, str(archive)], tmp_path)
    assert rc == 2 and stderr.strip().count("\n") == 0, stderr
    assert f"{victim}: cannot read (declares" in stderr and "over data.max_image_bytes (67,108,864)" in stderr
    print(f"peak RSS: normal {normal} KiB, {bomb} bomb {peak} KiB")
    assert peak <= 2 * normal, (peak, normal)


def test_trailing_bytes_after_a_jpeg_are_reported(small_tiny_zip, tmp_path):
    """A valid JPEG followed by data under the size limit decodes as the JPEG alone, and prepare
    says so in one warning naming the member and the byte count (exit 0, same arrays)."""
    import zipfile

    _twelve_class_params(tmp_path / "params.yaml")
    archive = tmp_path / "trailing.zip"
    with zipfile.ZipFile(small_tiny_zip) as source, zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        victims = sorted(n for n in source.namelist() if "/train/" in n and n.endswith("_3.JPEG"))[:2]
        for info in source.infolist():
            extra = {victims[0]: 1000, victims[1]: 123_456}.get(info.filename, 0)
            out.writestr(info, source.read(info) + b"\0" * extra)
    args = ["prepare", "imagenet200", "--params", str(tmp_path / "params.yaml"), "--threads", "2"]
    clean = run([sys.executable, "-m", "imgclf", *args, "--source", str(small_tiny_zip), "--out", str(tmp_path / "a")],
                tmp_path)
    assert "warning" not in clean.stderr
    padded = run([sys.executable, "-m", "imgclf", *args, "--source", str(archive), "--out", str(tmp_path / "b")], tmp_path)
    warnings = [line for line in padded.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {archive}: 2 JPEG(s) carry data after the end-of-image marker (ignored; each image "
                        f"stays under data.max_image_bytes); the most: {victims[1]}, 123,456 bytes"]
    for name in ("train.npz", "val.npz", "test.npz"):
        a, b = np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name)
        assert all(np.array_equal(a[key], b[key]) for key in a.files)
