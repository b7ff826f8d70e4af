"""The test harness's fault injection (``tests/faults/sitecustomize.py``) lives outside the
package: no production module knows of it, and from outside it still stops a process at each
point the resume and recovery tests rely on, leaving on disk what a kill there leaves."""

import ast
import json
import subprocess
import sys

import pytest

from conftest import ROOT, fault_env

PACKAGE = ROOT / "src" / "imgclf"
HARNESS_WORDS = ("IMGCLF_KILL_AT", "IMGCLF_KILL_GROUP", "IMGCLF_LOGICAL_CPUS", "IMGCLF_BREAK", "sitecustomize")


def _imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(part for alias in node.names for part in alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            names.update((node.module or "").split("."))
            names.update(alias.name for alias in node.names)
    return names


def test_no_production_module_knows_the_fault_machinery():
    assert not (PACKAGE / "faults.py").exists()
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        text = path.read_text()
        assert not [word for word in HARNESS_WORDS if word in text], path
        assert "faults" not in _imported_names(ast.parse(text)), path


def _python(code: str, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


WRITE_TWICE = "from imgclf import io_utils\nio_utils.write_text('out/a.txt', 'first')\nio_utils.write_text('out/a.txt', 'second')\n"


def test_a_kill_at_replace_leaves_the_complete_temporary_and_no_output(tmp_path):
    killed = _python(WRITE_TWICE, tmp_path, fault_env("replace out/a.txt"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "out/a.txt").exists()
    [temporary] = (tmp_path / "out").iterdir()
    assert temporary.name.startswith(".a.txt.") and temporary.name.endswith(".tmp")
    assert temporary.read_text() == "first"


def test_the_nth_time_and_nothing_without_the_variables(tmp_path):
    killed = _python(WRITE_TWICE, tmp_path, fault_env("replace out/a.txt:2"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "out/a.txt").read_text() == "first"  # the first write went through
    assert sorted(p.read_text() for p in (tmp_path / "out").glob(".a.txt.*.tmp")) == ["second"]
    undisturbed = _python(WRITE_TWICE, tmp_path / "out", fault_env())
    assert undisturbed.returncode == 0, undisturbed.stderr[-2000:]
    assert (tmp_path / "out/out/a.txt").read_text() == "second"


def test_a_kill_at_replace_of_a_directory(tmp_path):
    code = ("from imgclf import io_utils\nwith io_utils.atomic_dir('models/m') as tmp:\n"
            "    (tmp / 'model.keras').write_text('weights')\n")
    killed = _python(code, tmp_path, fault_env("replace models/m"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    [temporary] = (tmp_path / "models").iterdir()
    assert temporary.name.startswith(".m.") and (temporary / "model.keras").read_text() == "weights"
    assert temporary.stat().st_mode & 0o777 == 0o755


# the resume points, through the writers imgclf.resume and imgclf.train use
CHECKPOINT = """
from pathlib import Path
from imgclf.io_utils import atomic_path, write_json
work = Path(".resume/x/seed0")
work.mkdir(parents=True)
with atomic_path(work / "epoch0001.npz") as tmp:
    tmp.write_text("weights")
write_json(work / "state.json", {"epoch": 1})
write_json(work / "fold1.json", {"rows": []})
print("done")
"""


@pytest.mark.parametrize(("point", "left"), [
    ("checkpoint", set()),  # and the checkpoint's complete temporary
    ("state", {"epoch0001.npz"}),
    ("fold", {"epoch0001.npz", "state.json", "fold1.json"}),
])
def test_resume_points(tmp_path, point, left):
    killed = _python(CHECKPOINT, tmp_path, fault_env(point))
    assert killed.returncode == -9 and "done" not in killed.stdout, killed.stderr[-2000:]
    work = tmp_path / ".resume/x/seed0"
    temporaries = [p for p in work.iterdir() if p.name.endswith(".tmp")]
    assert {p.name for p in work.iterdir()} - {p.name for p in temporaries} == left
    if point == "checkpoint":
        [temporary] = temporaries
        assert temporary.name.startswith(".epoch0001.npz.") and temporary.read_text() == "weights"
    else:
        assert temporaries == []


def test_logical_cpus_give_distribution_two_devices(tmp_path):
    """With the CPU split in two, the production ``distribution`` finds the two devices itself."""
    code = ("from imgclf import runtime\nstrategy = runtime.distribution({'gpus': 2, 'batch_size': 8})\n"
            "print(runtime.replicas(strategy))\n")
    split = _python(code, tmp_path, fault_env(logical_cpus=2))
    assert split.returncode == 0, split.stderr[-2000:]
    plain = _python(code, tmp_path, fault_env())
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert (split.stdout.split()[-1], plain.stdout.split()[-1]) == ("2", "1")


def test_break_shuffles_the_train_stages_labels_only(tmp_path):
    """``IMGCLF_BREAK=shuffled_labels``: the train stage reads the training split's labels in another
    order (the same labels); evaluation and the other splits read them as written."""
    import numpy as np

    from imgclf import arrays

    labels = np.arange(100) % 10
    arrays.save_split(tmp_path / "train.npz", np.zeros((100, 2, 2, 3), np.uint8), labels)
    arrays.save_split(tmp_path / "val.npz", np.zeros((100, 2, 2, 3), np.uint8), labels)
    code = ("import json, sys; sys.argv[1:] = [{stage!r}]; from imgclf import arrays; "
            "print(json.dumps(arrays.load_split({path!r})[1].tolist()))")
    env = {**fault_env(), "IMGCLF_BREAK": "shuffled_labels"}
    read = {(stage, split): _python(code.format(stage=stage, path=str(tmp_path / f"{split}.npz")), tmp_path, env)
            for stage in ("train", "evaluate") for split in ("train", "val")}
    assert all(result.returncode == 0 for result in read.values()), read
    got = {key: json.loads(result.stdout) for key, result in read.items()}
    assert got["train", "train"] != labels.tolist() and sorted(got["train", "train"]) == sorted(labels.tolist())
    assert got["evaluate", "train"] == got["train", "val"] == got["evaluate", "val"] == labels.tolist()


def test_break_freezes_every_fit(tmp_path):
    """``IMGCLF_BREAK=frozen``: a ``Model.fit`` leaves the weights as they were; without it they move."""
    code = ("import numpy as np, keras; keras.utils.set_random_seed(0); "
            "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]); m.compile('sgd', 'mse'); "
            "before = [w.copy() for w in m.get_weights()]; "
            "m.fit(np.ones((32, 4)), np.zeros((32, 3)), batch_size=8, epochs=2, verbose=0); "
            "print(all(np.array_equal(a, b) for a, b in zip(before, m.get_weights())))")
    frozen = _python(code, tmp_path, {**fault_env(), "IMGCLF_BREAK": "frozen"})
    free = _python(code, tmp_path, fault_env())
    assert (frozen.stdout.split()[-1:], free.stdout.split()[-1:]) == (["True"], ["False"]), (frozen.stderr[-2000:],
                                                                                           free.stderr[-2000:])
