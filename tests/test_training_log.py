"""The per-epoch DVCLive files a training run writes (``imgclf.training_log.LiveFiles``) are the
bytes DVCLive's own ``Live.log_metric`` and ``Live.make_summary`` write for the same values:
``dvc metrics``, ``dvc plots`` and ``dvc exp show`` read them as DVCLive's."""

import filecmp
import math
import random
import subprocess

import pytest

from imgclf.training_log import LiveFiles, TrainingLog, read_live


def _files(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("prefixes", [[""], ["fold1/", "fold2/", ""]], ids=["one fit", "cross-validation folds"])
def test_live_files_are_dvclives_bytes(tmp_path, monkeypatch, prefixes):
    from dvclive import Live

    monkeypatch.chdir(tmp_path)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], check=True)  # DVCLive wants a DVC repository
    ours, theirs = LiveFiles(tmp_path / "ours"), Live("theirs", dvcyaml=None, save_dvc_exp=False, report=None)
    rng = random.Random(0)
    for prefix in prefixes:
        for step in range(1, 4):
            theirs.step = step
            for name in ("loss", "accuracy", "val_top5"):
                value = math.nan if (step, name) == (2, "loss") else round(rng.random(), 6)
                ours.log(step, prefix + name, value)
                theirs.log_metric(prefix + name, value)
            ours.write_summary()
            theirs.make_summary()
    files = _files(tmp_path / "theirs")
    assert "metrics.json" in files and len(files) == 1 + 3 * len(prefixes)
    assert _files(tmp_path / "ours") == files
    differ = [f for f in files if not filecmp.cmp(tmp_path / "ours" / f, tmp_path / "theirs" / f, shallow=False)]
    assert not differ, differ


def test_a_restarted_log_replays_its_epochs_once(tmp_path):
    rows = [{"epoch": epoch, "loss": 1.0 / epoch, "val_accuracy": 0.1 * epoch, "seconds": 3.0} for epoch in (1, 2, 3)]
    first = TrainingLog(tmp_path / "live", None)
    for row in rows[:2]:
        first.epoch(row)
    again = TrainingLog(tmp_path / "live", None)  # killed after epoch 2, run again
    again.replay(rows[:2])
    again.epoch(rows[2])
    assert read_live(tmp_path / "live", "val_accuracy") == [(1, 0.1), (2, 0.2), (3, pytest.approx(0.3))]
    assert read_live(tmp_path / "live", "seconds") == []  # the wall time is not in these logs
