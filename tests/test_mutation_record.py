"""``tools/mutation_score.py --check``: a mutation record (`make mutate`,
bench/records/mutation-<date>.log) holds for a work tree when it scored the mutated modules and the
tests that run against them as they are there, meets the targets (85 % overall, 75 % in every module
or the module's recorded exception) and every survivor it lists has its reason in
bench/mutation-survivors.tsv."""

import importlib.util
import shutil

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "tools" / "mutation_score.py")
mutation_score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation_score)


@pytest.fixture
def copy(tmp_path):
    """The files a record depends on, in a directory of their own, and a record that holds for them:
    two modules, one under its target with an exception, and one survivor with a reason."""
    for path in [ROOT / "pyproject.toml", *mutation_score.scored_files()]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (tmp_path / "bench" / "records").mkdir(parents=True)
    (tmp_path / "bench" / "mutation-survivors.tsv").write_text(
        "# reasons\nimgclf.paths.x_f__mutmut_*\tequivalent: a test\nmodule imgclf.codedeps\tcaches filled at import\n")
    (tmp_path / "bench" / "records" / "mutation-2000-01-01.log").write_text(
        f"commit 0\nscored {mutation_score.scored_digest(tmp_path)}\n"
        "mutation score: 95/110 killed\n"
        "imgclf.codedeps                                     5     10   50.0 %  caches filled at import\n"
        "imgclf.paths                                       90    100   90.0 %  \n"
        "  imgclf.paths.x_f__mutmut_3 [survived]: a  ->  b\n      why: equivalent: a test\n")
    return tmp_path


def test_a_record_that_holds_passes(copy):
    assert mutation_score.check(root=copy) == []


def test_a_change_to_a_mutated_module_or_its_tests_makes_the_record_stale(copy):
    for name in ("src/imgclf/splits.py", "tests/test_splits.py"):
        path = copy / name
        kept = path.read_text()
        path.write_text(kept + "\n")
        problems = mutation_score.check(root=copy)
        assert len(problems) == 1 and "scored other code or tests than the work tree's" in problems[0]
        path.write_text(kept)
    assert mutation_score.check(root=copy) == []


def test_a_survivor_without_a_reason_and_a_module_under_target_fail(copy):
    reasons = copy / "bench" / "mutation-survivors.tsv"
    reasons.write_text(reasons.read_text().replace("imgclf.paths.x_f__mutmut_*", "imgclf.paths.x_g__mutmut_*"))
    assert any("1 survivors without a reason" in line and "imgclf.paths.x_f__mutmut_3" in line
               for line in mutation_score.check(root=copy))
    reasons.write_text("imgclf.paths.x_f__mutmut_*\tequivalent: a test\n")  # codedeps' exception gone
    assert any("imgclf.codedeps: 5/10 = 50.0% < 75% and no exception recorded" in line
               for line in mutation_score.check(root=copy))


def test_a_record_is_refused_when_the_scored_files_changed_during_the_run(tmp_path, capsys):
    record = tmp_path / "mutation-2000-01-01.log"
    assert mutation_score.main(["--record", str(record), "--scored", "0" * 64]) == 1
    assert capsys.readouterr().out.startswith(f"not recorded: the scored files changed while mutmut ran (digest {'0' * 64} before, ")
    assert not record.exists()


def test_the_committed_record_scored_this_work_tree():
    """The newest record under bench/records/ is of this work tree's mutated modules and selected
    tests, meets the targets and explains every survivor: after a change to either, `make mutate`
    and its record are due."""
    assert mutation_score.check() == []


def test_a_mutant_whose_tests_time_out_or_crash_is_caught_one_no_test_reaches_is_not(monkeypatch):
    states = {"imgclf.m.x_f__mutmut_1": "killed", "imgclf.m.x_f__mutmut_2": "timeout",
              "imgclf.m.x_f__mutmut_3": "segfault", "imgclf.m.x_f__mutmut_4": "no tests",
              "imgclf.m.x_f__mutmut_5": "survived"}
    monkeypatch.setattr(mutation_score, "results", lambda: states)
    monkeypatch.setattr(mutation_score, "changed_line", lambda name: "a  ->  b")
    monkeypatch.setattr(mutation_score, "reasons", lambda path=None: ({"imgclf.m.x_f__mutmut_*": "a reason"}, {}))
    lines = []
    assert mutation_score.report(lines.append) == 1  # 3/5 = 60 %: under both targets
    assert lines[0].startswith("mutation score: 3/5 killed = 60.0%")
    assert "2 not killed:" in "\n".join(lines)
    listed = [line.split(" [")[0].strip() for line in lines if line.startswith("  imgclf.")]
    assert listed == ["imgclf.m.x_f__mutmut_4", "imgclf.m.x_f__mutmut_5"]
