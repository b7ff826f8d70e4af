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
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Hypothesis: where CI is set, the same examples on every run, no deadline, and a failure printed
# with the blob that reproduces it; elsewhere new examples each run, failures replayed from .hypothesis/
# (both over Hypothesis' own defaults, which it swaps for its CI profile wherever CI is set at all)
_HYPOTHESIS_DEFAULT = hypothesis_settings.get_profile("default")
hypothesis_settings.register_profile("ci", _HYPOTHESIS_DEFAULT, derandomize=True, database=None, deadline=None,
                                     print_blob=True)
hypothesis_settings.register_profile("dev", _HYPOTHESIS_DEFAULT,
                                     database=DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples"))
hypothesis_settings.load_profile("ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "dev")


FAULTS = ROOT / "tests" / "faults"


def fault_env(kill_at: str | None = None, group: bool = False, logical_cpus: int | None = None) -> dict:
    """The environment for a subprocess with the test harness's faults (``tests/faults``, its
    ``sitecustomize`` first on PYTHONPATH): SIGKILL at ``kill_at`` (``<point>[:<n>]``), of the whole
    process group where ``group``, and the CPU split into ``logical_cpus`` TensorFlow devices. The
    Python processes the subprocess starts (Snakemake's and DVC's stages) inherit it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))}
    if kill_at:
        env["IMGCLF_KILL_AT"] = kill_at
    if group:
        env["IMGCLF_KILL_GROUP"] = "1"
    if logical_cpus:
        env["IMGCLF_LOGICAL_CPUS"] = str(logical_cpus)
    return env


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


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    """A temporary directory for one module's shared fixtures, removed when the module's tests end
    (tmp_path_factory's directories would stay to the end of the session)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


@functools.cache
def own_work_tree() -> bool:
    """Whether the project is its own git work tree (not mutmut's ``mutants/`` copy inside one)."""
    top = run(["git", "rev-parse", "--show-toplevel"], ROOT, check=False).stdout.strip()
    return bool(top) and Path(top).resolve() == ROOT


def project_files() -> list[str]:
    """The project's files: what git tracks or would (ignored files left out). A copy that is not
    its own git work tree (mutmut's ``mutants/``, which the project's .gitignore ignores) is walked
    instead, leaving out caches and the project's generated outputs."""
    if own_work_tree():
        return run(["git", "ls-files", "-co", "--exclude-standard"], ROOT).stdout.split()
    outputs = {".snakemake", "mutants", ".venv", "logs", "models", "data", ".hypothesis"}  # at the top only
    caches = {"__pycache__", ".pytest_cache"}

    def kept(parts: tuple[str, ...]) -> bool:
        generated = parts[0] in outputs and len(parts) > 1 or "/".join(parts[:2]) in (".dvc/cache", ".dvc/tmp")
        return parts[-1] == ".gitkeep" or not (generated or caches & set(parts[:-1]))

    return sorted(str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
                  if path.is_file() and kept(path.relative_to(ROOT).parts))


def make_project(dest: Path, params: dict | None = None) -> Path:
    """A copy of the project's tracked files in ``dest`` as a fresh git + DVC repository."""
    files = project_files()
    # not the results committed with the project: they belong to its params, not to these
    files = [name for name in files if not name.startswith("reports/") or name == "reports/.gitkeep"]
    for name in files:
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if params is not None:
        write_params(dest / "params.yaml", params)
        run(["imgclf", "runs"], dest)  # config/runs.yaml: dvc.yaml's stages for these params
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


def snakemake_commands(cwd, *args, env=None) -> list[str]:
    """The shell command of every job ``snakemake --dry-run --printshellcmds`` plans, in its order."""
    out = run(["snakemake", "--dry-run", "--printshellcmds", "--cores", "1", *args], cwd, env=env).stdout
    return [line.split("Shell command: ", 1)[1] for line in out.splitlines() if "Shell command: " in line]


def dvc_stages_to_run(cwd, *args) -> set:
    """Stages that ``dvc repro --dry`` would run."""
    out = run(["dvc", "repro", "--dry", *args], cwd).stdout
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def dvc_commands(cwd, env=None) -> dict:
    """Stage address -> command, of every stage in the project's dvc.yaml (as DVC resolves them)."""
    out = run(["python", "-c", "from dvc.repo import Repo\nwith Repo('.') as r:\n"
               "    [print(s.addressing, '|', s.cmd) for s in r.index.stages]"], cwd, env=env).stdout
    return dict(line.split(" | ", 1) for line in out.splitlines() if " | " in line)


def dvc_up_to_date(cwd) -> bool:
    """Whether ``dvc status`` finds every stage's outputs current."""
    return run(["dvc", "status", "--quiet"], cwd, check=False).returncode == 0


def digest(data: bytes | Path) -> str:
    """The MD5 of bytes or of a file's bytes (what DVC records of a file)."""
    import hashlib

    return hashlib.md5(data if isinstance(data, bytes) else Path(data).read_bytes()).hexdigest()


def file_hashes(root: Path, *dirs: str) -> dict:
    """Path (relative to ``root``) -> ``digest`` of every file under ``dirs``."""
    return {str(path.relative_to(root)): digest(path) for directory in dirs
            for path in sorted((root / directory).rglob("*"))
            if path.is_file() and path.name != ".snakemake_timestamp"}  # Snakemake's marker (.dvcignore'd)


def load_params(name: str = "params.yaml") -> dict:
    """A params file's choices (not validated, no defaults); a profile (``config/<name>.yaml``) is
    laid over params.yaml, as ``imgclf params --profile`` does."""
    if name.startswith("config/"):
        from imgclf import config

        return yaml.safe_load(config.apply_profile(ROOT / "params.yaml", str(ROOT / name))[0])
    return yaml.safe_load((ROOT / name).read_text())


def put(params: dict, key: str, value) -> dict:
    """Set a dotted key in a params mapping, creating the sections it needs; return the mapping."""
    *sections, last = key.split(".")
    node = params
    for part in sections:
        node = node.setdefault(part, {})
    node[last] = value
    return params


def write_params(path: Path, params: dict) -> Path:
    """``params`` as a params file at ``path`` (keys in their order, as a user's file keeps them)."""
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def edit_params(path: Path, changes: dict) -> dict:
    """Set each dotted key of ``changes`` in the params file at ``path``; return what it now holds."""
    params = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        put(params, key, value)
    write_params(path, params)
    return params


SLURM_SCRIPT = ROOT / ".ci/slurm-cluster.sh"


def slurm_installed() -> bool:
    return shutil.which("slurmctld") is not None and shutil.which("munged") is not None


def _slurm_wanted() -> bool:
    if os.environ.get("IMGCLF_SLURM") == "off":  # make mutate: fast tests only, no cluster
        return False
    if not slurm_installed():
        if os.environ.get("IMGCLF_REQUIRE_SLURM"):
            raise pytest.UsageError("IMGCLF_REQUIRE_SLURM is set but slurm-wlm/munge are not installed")
        return False
    return True


def _slurm_up() -> bool:
    return run(["scontrol", "ping"], ROOT, check=False, timeout=60).returncode == 0


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist starts its workers
def pytest_sessionstart(session):
    """Where slurm-wlm is installed, its single-node cluster runs for the whole session: started here
    (in the controlling process, once, also under pytest-xdist) and stopped at the end, pass or
    fail, unless it was already up. Besides the SLURM run below, this matters to every
    ``snakemake`` call: snakemake-executor-plugin-slurm runs ``scontrol show config`` when it is
    imported, which waits MessageTimeout (10 s) on a host whose SLURM controller is down."""
    if hasattr(session.config, "workerinput") or not _slurm_wanted() or _slurm_up():
        return  # an xdist worker (the controller starts it), no SLURM here, or already up: left running
    run(["bash", str(SLURM_SCRIPT), "start"], ROOT, timeout=180)
    session.config.imgclf_started_slurm = True


def pytest_sessionfinish(session, exitstatus):
    if getattr(session.config, "imgclf_started_slurm", False):
        run(["bash", str(SLURM_SCRIPT), "stop"], ROOT, check=False, timeout=120)


# The modules whose tests share the session's pipeline run (``ci_project``), the longest task.
PIPELINE_MODULES = ("test_pipeline.py", "test_versioning.py", "test_slurm.py")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """No test outside the pipeline modules may use ``ci_project`` (it would build the pipeline again
    on another worker). Under ``--random-order-bucket=module`` (``make test``) the modules run in a
    random order and so do the fast tests within each; the end-to-end runs (``slow``) keep their
    module's written order, as they act in turn on projects their module builds once. After any
    shuffle: the shared pipeline's modules first, in their written order (under pytest-xdist the
    longest task starts at once), and each module's tests together (its fixtures built once)."""
    elsewhere = [i.nodeid for i in items if "ci_project" in getattr(i, "fixturenames", ()) and i.path.name not in PIPELINE_MODULES]
    if elsewhere:
        raise pytest.UsageError(f"tests using ci_project belong in {', '.join(PIPELINE_MODULES)}: {elsewhere}")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.random_order(disabled=True))
    yield
    rank = {name: index for index, name in enumerate(PIPELINE_MODULES)}
    first: dict = {}
    for index, item in enumerate(items):
        first.setdefault(item.path, index)
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), first[item.path]))  # stable


# Long modules whose test functions may go to different workers (test_recovery's ``finished``
# project is built once, by the first worker to need it, in the workers' common directory)
SPLIT_MODULES = ("test_recovery.py",)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: `-p no:xdist` runs without it
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist: the pipeline modules go to one worker as one unit (one ``ci_project``), every
    other module to whichever worker is free (module fixtures built once)."""
    from xdist.scheduler import LoadScopeScheduling

    class PipelineScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module.rsplit("/", 1)[-1] in PIPELINE_MODULES:
                return "ci_project"
            if module.rsplit("/", 1)[-1] in SPLIT_MODULES:  # one unit per test function
                return nodeid.split("[", 1)[0]
            return module

    return PipelineScheduling(config, log)


@pytest.fixture(scope="session")
def slurm_cluster():
    """Whether the single-node SLURM cluster is up for this session's pipeline run."""
    return _slurm_wanted() and _slurm_up()


@pytest.fixture(scope="session")
def ci_project(tmp_path_factory, slurm_cluster):
    """The whole pipeline (config/ci.yaml) run once in a fresh git + DVC repository.

    Where slurm-wlm is installed (CI installs it) the run goes through the real single-node SLURM
    cluster with ``--profile profiles/slurm``; elsewhere through the local profile.
    ``project.slurm_log`` keeps the SLURM run's output."""
    project = make_project(tmp_path_factory.mktemp("ci"), load_params("config/ci.yaml"))
    run_pipeline(project, slurm_cluster)
    yield project


def run_pipeline(project: Path, slurm: bool) -> None:
    """The whole pipeline in ``project``: through the SLURM cluster (its output kept in
    ``.slurm-run.log``), or with the local profile."""
    if not slurm:
        run(["snakemake", "--cores", "2"], project, timeout=2400)
        return
    # status checks every 2 s at first (the profile's 10 s suit a shared cluster; here most jobs last
    # seconds, and each level of the DAG would wait for a check)
    result = run(["snakemake", "--profile", "profiles/slurm", "--slurm-status-command", "squeue", "--jobs", "4",
                  "--slurm-init-seconds-before-status-checks", "2"], project, timeout=3000)
    (project / ".slurm-run.log").write_text(result.stdout + result.stderr)
