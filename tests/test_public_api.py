"""The workflow and the package use Snakemake, DVC and DVCLive through their public API only: no
private attribute (``obj._name``) of another library's object, no ``workflow.dag``. Keras and
AutoKeras internals still used are listed below, each with its reason."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (file, attribute): why no public API does it
KNOWN = {
    ("src/imgclf/seeding.py", "_flatten_layers"): "Keras 3 has no public walk over nested layers' seed generators",
    ("src/imgclf/batchnorm.py", "_flatten_layers"): "Keras 3 has no public walk over nested layers",
    ("src/imgclf/optimizers.py", "_backend_update_step"): "the fused update replaces Keras' per-variable step",
    ("src/imgclf/models/autokeras_search.py", "_build_and_fit_model"): "AutoKeras seeds no trial; its tuner's fit is wrapped",
}
PRIVATE = re.compile(r"(?<![\w.])(?!self\b|cls\b)([A-Za-z]\w*(?:\(\))?)\.(_[a-z]\w*)")


def _sources():
    return [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk")), *sorted((ROOT / "src").rglob("*.py"))]


def _private_uses(text: str) -> set[str]:
    return {attribute for _, attribute in PRIVATE.findall(text)}


def test_no_private_attribute_of_another_library():
    found = {(str(path.relative_to(ROOT)), attribute) for path in _sources()
             for attribute in _private_uses(path.read_text())}
    assert found - set(KNOWN) == set(), found - set(KNOWN)
    assert set(KNOWN) <= found, set(KNOWN) - found  # an entry no longer needed goes


def test_the_workflow_reads_no_dag():
    for path in [ROOT / "Snakefile", *(ROOT / "workflow").rglob("*.smk")]:
        assert not re.search(r"\bworkflow\.(dag|_\w+|persistence|scheduler)\b", path.read_text()), path


def test_the_grep_finds_what_it_must():
    assert _private_uses("names = [job for job in workflow.dag.jobs]") == set()  # caught by the test above
    assert _private_uses("        def _init_dvc(self):\n            super()._init_dvc()") == {"_init_dvc"}
    assert _private_uses("model._flatten_layers(include_self=True)") == {"_flatten_layers"}
    assert _private_uses("self._seed = 1; cls._cache = {}; module.__name__") == set()
