"""tools/resources.py, the full reproduction's cost table: measured stages from a finished run of
the ``full`` profile replace the projections, and every figure says which it is."""

import importlib.util
import json
import subprocess
import sys


from conftest import ROOT

spec = importlib.util.spec_from_file_location("resources", ROOT / "tools" / "resources.py")
resources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(resources)
REHEARSAL = sorted((ROOT / "bench" / "records").glob("paper_scale-*.json"))[-1]


def _run(profile="full", cores=2, gpu=None, status="Data and pipelines are up to date.", seconds=1000.0):
    jobs = {"train/densenet121/seed0": {"seconds": seconds, "max_rss_mb": 3100},
            "evaluate/densenet121/seed0": {"seconds": 60.0, "max_rss_mb": 2000},
            "train/alexnet32/seed1": {"seconds": 5.0, "max_rss_mb": 1},  # seed 1: not the projected run
            "train/seed_cnn/seed0": {"seconds": 7.0, "max_rss_mb": 1}}  # no evaluation: not complete
    return {"profile": profile, "cores": cores, "gpu": gpu, "dvc_status_after": status, "jobs": jobs,
            "source": f"{profile}-{cores}-{gpu}"}


def test_measured_stages_replace_projections_and_say_so():
    record = json.loads(REHEARSAL.read_text())
    record["data_val_images"] = dict.fromkeys(record["experiments"], 10000)
    projected = resources.project(record)
    measured = resources.measured_stages([_run(), _run(gpu="NVIDIA H200", seconds=100.0), _run(cores=8, seconds=1.0),
                                          _run(profile="fashion", seconds=2.0), _run(status="changed", seconds=3.0)],
                                         cores=2)
    table = resources.with_measurements(projected, measured)
    row = table["densenet121"]
    assert (row["train_cpu_s"], row["evaluate_cpu_s"], row["cpu_basis"]) == (1000.0, 60.0, "m")
    assert (row["train_gpu_s"], row["evaluate_gpu_s"], row["gpu_basis"]) == (100.0, 60.0, "m")
    assert row["peak_rss_mb"] == 3100 and row["sources"] == ["full-2-None", "full-2-NVIDIA H200"]
    for name in set(table) - {"densenet121"}:
        assert table[name]["cpu_basis"] == table[name]["gpu_basis"] == "p"
        assert table[name]["train_cpu_s"] == projected[name]["train_cpu_s"]


def test_the_table_marks_every_figure(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(_run()))
    out = subprocess.run([sys.executable, "tools/resources.py", "--measured", str(run)], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("densenet121 ", "seed_cnn "))}
    assert f"measured stages: {run}" in out
    # experiment, peak RSS, mem_mb, CPU h, its basis, GPU h, its basis, runtime_min, img/s
    assert rows["densenet121"][1:2] + rows["densenet121"][4:7:2] == ["3100", "m", "p"]  # CPU measured, GPU projected
    assert rows["seed_cnn"][4:7:2] == ["p", "p"]
