"""``imgclf record STAGE...``: after a Snakemake run, record its stages in dvc.lock (``dvc commit``:
hashes only, no retraining), so ``dvc status`` is clean and ``dvc metrics diff`` and ``dvc push``
see the results. Snakemake's ``onsuccess`` calls it with the stages of the jobs it ran."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from imgclf import paths, resolved, stages


def record(params: dict, names: list[str]) -> str:
    """Commit ``names`` (and check_params, whose files are written first) to dvc.lock; returns
    what was done, one line. Outside a DVC repository nothing is done."""
    if not Path(".dvc").is_dir() or shutil.which("dvc") is None:
        return "not a DVC repository: nothing recorded"
    table = stages.by_name(params)
    unknown = sorted(set(names) - set(table))
    if unknown:
        return f"not recording in dvc.lock: {', '.join(unknown)} not in {paths.RUNS_FILE} (run `imgclf runs`)"
    # check_params' outputs: every stage's params values (the Snakefile checked params.yaml already)
    resolved.write_checked(params)
    # dvc commit moves outputs into its cache and links or copies them back: new file times. Put the
    # old ones back, or Snakemake would see inputs newer than outputs next time.
    times = {}
    for name in names:
        for out in table[name].outs:
            top = Path(out)
            for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
                if path.exists():
                    times[path] = path.stat()
    result = subprocess.run(["dvc", "commit", "--force", "check_params", *names], capture_output=True, text=True)
    for path, stat in sorted(times.items(), key=lambda item: -len(item[0].parts)):  # files before their dirs
        if path.exists():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        reason = next((line for line in lines if line.startswith("ERROR")), lines[-1])
        return f"warning: dvc commit failed; dvc.lock not updated: {reason} (then run `make sync` or `dvc commit`)"
    return f"dvc.lock: {len(names)} stages recorded"
