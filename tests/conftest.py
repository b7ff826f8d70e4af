import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(cmd, cwd, check=True, **kwargs):
    """Run a command; on failure show its output in the assertion."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture
def data_params():
    from imgclf import config

    return config.load(ROOT / "params.yaml")["data"]


@pytest.fixture(scope="session")
def small_tiny_zip(tmp_path_factory):
    """A Tiny ImageNet-layout zip: 12 classes x 20 train, 5 val each, with the odd images."""
    from imgclf import sample

    path = tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200.zip"
    sample.make_tiny_imagenet(path, classes=12, train_per_class=20, val_per_class=5, test_images=4)
    return path


@pytest.fixture(scope="session")
def http_server(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving a temporary directory; yields (directory, base URL)."""
    directory = tmp_path_factory.mktemp("served")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_project(dest: Path, params: dict | None = None) -> Path:
    """A copy of the project's tracked files in ``dest`` as a fresh git + DVC repository."""
    files = run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["imgclf", "dvc-yaml"], dest)  # one stage per (experiment, seed) of these params
    run(["git", "init", "-q"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], dest)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], dest)
    return dest


def snakemake_jobs(cwd, *args) -> dict:
    """Rule -> job count that ``snakemake --dry-run`` would run (empty: nothing to do)."""
    out = run(["snakemake", "--dry-run", "--cores", "2", *args], cwd).stdout
    jobs, table = {}, False
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
        elif table and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            if parts[0] != "all":  # the target rule, not a stage
                jobs[parts[0]] = int(parts[1])
    return jobs


def dvc_stages_to_run(cwd, *args) -> set:
    """Stages that ``dvc repro --dry`` would run."""
    out = run(["dvc", "repro", "--dry", *args], cwd).stdout
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def file_hashes(root: Path, *dirs: str) -> dict:
    import hashlib

    hashes = {}
    for directory in dirs:
        for path in sorted((root / directory).rglob("*")):
            if path.is_file() and path.name != ".snakemake_timestamp":  # Snakemake's marker (.dvcignore'd)
                hashes[str(path.relative_to(root))] = hashlib.md5(path.read_bytes()).hexdigest()
    return hashes


def load_params(name: str = "params.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


SLURM_SCRIPT = ROOT / ".ci/slurm-cluster.sh"


def slurm_installed() -> bool:
    return shutil.which("slurmctld") is not None and shutil.which("munged") is not None


@pytest.fixture(scope="session", autouse=True)
def slurm_cluster():
    """Where slurm-wlm is installed, its single-node cluster runs for the whole session (started
    here and stopped at the end, pass or fail, unless it was already up). Besides the SLURM run below, this matters to every
    ``snakemake`` call: snakemake-executor-plugin-slurm runs ``scontrol show config`` when it is
    imported, which waits MessageTimeout (10 s) on a host whose SLURM controller is down."""
    if not slurm_installed():
        if os.environ.get("IMGCLF_REQUIRE_SLURM"):
            pytest.fail("IMGCLF_REQUIRE_SLURM is set but slurm-wlm/munge are not installed")
        yield False
        return
    if run(["scontrol", "ping"], ROOT, check=False, timeout=60).returncode == 0:
        yield True  # already up (another session's, or started by hand): used, left running
        return
    run(["bash", str(SLURM_SCRIPT), "start"], ROOT, timeout=180)
    try:
        yield True
    finally:
        run(["bash", str(SLURM_SCRIPT), "stop"], ROOT, check=False, timeout=120)


@pytest.fixture(scope="session")
def ci_project(tmp_path_factory, slurm_cluster):
    """The whole pipeline (config/ci.yaml) run once in a fresh git + DVC repository.

    Where slurm-wlm is installed (CI installs it) the run goes through the real single-node SLURM
    cluster with ``--profile profiles/slurm``; elsewhere through the local profile.
    ``project.slurm_log`` keeps the SLURM run's output."""
    project = make_project(tmp_path_factory.mktemp("ci"), load_params("config/ci.yaml"))
    if not slurm_cluster:
        run(["snakemake", "--cores", "2"], project, timeout=2400)
        yield project
        return
    result = run(["snakemake", "--profile", "profiles/slurm", "--slurm-status-command", "squeue", "--jobs", "4"],
                 project, timeout=3000)
    (project / ".slurm-run.log").write_text(result.stdout + result.stderr)
    yield project
