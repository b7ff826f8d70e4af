"""Mutation score of the modules that carry the project's promises, after `mutmut run` (`make mutate`).

Prints killed / all mutants (a mutant no fast test reaches counts as not killed; one whose tests
never end, stopped at mutmut's timeout, or crash counts as killed), the score per
module and per function, and every survivor with its changed line and its reason from
bench/mutation-survivors.tsv (``<mutant name or fnmatch pattern><TAB><one line: equivalent, or the
test it needs>``; "no reason recorded" for a new one). The targets: 85 % overall and 75 % in every
module, or the module's exception with its reason (a ``module <name><TAB><reason>`` row of the same
file). Exit status 1 when a target is missed or a survivor has no reason.

    python tools/mutation_score.py [--record bench/records/mutation-<date>.log [--scored DIGEST] | --only PATTERN
                                    | --check | --digest]

``--record`` also writes what it prints, headed by the commit and by the digest of what was scored
(the mutated modules, the tests mutmut runs against them and the mutmut settings), to that file, and
refuses to when the digest ``--digest`` printed before mutmut ran (``--scored``) is no longer the work
tree's: a file changed during the run;
``--only`` scores the mutants whose names match PATTERN (fnmatch, as ``mutmut run PATTERN`` took
them) and no others, and fails only under 85 %. ``--check`` runs no mutmut: it fails when the newest record under
bench/records/ scored other code or tests than the work tree holds, or lists a survivor that
bench/mutation-survivors.tsv gives no reason for, or misses a target."""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET, MODULE_TARGET = 0.85, 0.75
REASONS = ROOT / "bench" / "mutation-survivors.tsv"
RECORDS = ROOT / "bench" / "records"
SURVIVOR = re.compile(r"  (\S+) \[([^\]]+)\]: ")
# a mutant is caught when its tests fail, or never end (stopped at mutmut's timeout), or crash
CAUGHT = ("killed", "timeout", "segfault")
MODULE_ROW = re.compile(r"(imgclf\.\S+)\s+(\d+)\s+(\d+)\s+[\d.]+ %")


def reasons(path: Path = REASONS) -> tuple[dict[str, str], dict[str, str]]:
    """(mutant name or pattern -> reason, module -> reason for scoring under MODULE_TARGET)."""
    mutants, modules = {}, {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, reason = (part.strip() for part in line.split("\t", 1))
                if name.startswith("module "):
                    modules[name.removeprefix("module ")] = reason
                else:
                    mutants[name] = reason
    return mutants, modules


def reason_for(name: str, why: dict[str, str]) -> str | None:
    return why.get(name) or next((text for key, text in why.items() if fnmatch.fnmatch(name, key)), None)


def module_of(function: str) -> str:
    return function.rsplit(".", 1)[0]


def scored_files(root: Path = ROOT) -> list[Path]:
    """What a mutation run's result depends on: the mutated modules ([tool.mutmut] only_mutate), the
    test files it runs against them, tests/conftest.py and the harness, and pyproject.toml's
    [tool.mutmut] (as its own entry: the rest of pyproject.toml does not count)."""
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    sources = sorted(path for path in (root / "src").rglob("*.py")
                     if any(fnmatch.fnmatch(str(path.relative_to(root)), pattern) for pattern in settings["only_mutate"]))
    tests = sorted({root / entry.split("::", 1)[0] for entry in settings["pytest_add_cli_args_test_selection"]}
                   | {root / "tests" / "conftest.py"} | set((root / "tests" / "faults").glob("*.py")))
    return sources + tests


def scored_digest(root: Path = ROOT) -> str:
    """SHA-256 over the scored files' paths and bytes and the [tool.mutmut] settings."""
    digest = hashlib.sha256()
    settings = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    digest.update(repr(sorted(settings.items())).encode())
    for path in scored_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def results() -> dict[str, str]:
    out = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    status = {}
    for line in out.splitlines():
        name, _, state = line.strip().rpartition(": ")
        if name:
            status[name] = state
    return status


def changed_line(name: str) -> str:
    diff = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    minus = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return f"{minus[0] if minus else ''}  ->  {plus[0] if plus else '(removed)'}"


def missed_targets(modules: dict[str, tuple[int, int]], exceptions: dict[str, str]) -> list[str]:
    """The targets a run misses: (killed, total) per module against MODULE_TARGET, unless the module
    has an exception, and the sum of all against TARGET."""
    missed = [f"{name}: {killed}/{total} = {killed / total:.1%} < {MODULE_TARGET:.0%} and no exception recorded"
              for name, (killed, total) in sorted(modules.items())
              if killed / total < MODULE_TARGET and name not in exceptions]
    killed, total = (sum(column) for column in zip(*modules.values())) if modules else (0, 0)
    if not total or killed / total < TARGET:
        missed.append(f"overall: {killed}/{total} < {TARGET:.0%}")
    return missed


def report(out, only: str | None = None) -> int:
    status = {name: state for name, state in results().items() if only is None or fnmatch.fnmatch(name, only)}
    if not status:
        out("no mutants: run `mutmut run` first (make mutate)")
        return 1
    by_function = collections.defaultdict(collections.Counter)
    for name, state in status.items():
        function = re.sub(r"__mutmut_\d+$", "", name).replace(".x_", ".", 1)
        by_function[function][state] += 1
    modules: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for function, counter in by_function.items():
        modules[module_of(function)][0] += sum(counter[state] for state in CAUGHT)
        modules[module_of(function)][1] += sum(counter.values())
    why, exceptions = reasons()
    killed = sum(k for k, _ in modules.values())
    total = sum(t for _, t in modules.values())
    out(f"mutation score: {killed}/{total} killed = {killed / total:.1%} (target {TARGET:.0%}, "
        f"{MODULE_TARGET:.0%} in every module or its recorded exception; a timeout or a crash counts as killed)")
    out(f"{'module':45s} {'killed':>7s} {'of':>6s} {'score':>8s}  exception")
    for module, (k, t) in sorted(modules.items()):
        exception = exceptions.get(module, "") if k / t < MODULE_TARGET else ""
        out(f"{module:45s} {k:7d} {t:6d} {100 * k / t:6.1f} %  {exception}")
    out(f"\n{'function':45s} {'killed':>7s} {'timeout':>8s} {'survived':>9s} {'no test':>8s} {'other':>6s}")
    for function, counter in sorted(by_function.items()):
        other = sum(counter.values()) - sum(counter[state] for state in (*CAUGHT, "survived", "no tests")) + counter["segfault"]
        out(f"{function:45s} {counter['killed']:7d} {counter['timeout']:8d} {counter['survived']:9d} "
            f"{counter['no tests']:8d} {other:6d}")
    survivors = [name for name, state in status.items() if state not in CAUGHT]
    out(f"\n{len(survivors)} not killed:")
    unexplained = 0
    for name in survivors:
        reason = reason_for(name, why)
        unexplained += reason is None
        out(f"  {name} [{status[name]}]: {changed_line(name)}\n      why: {reason or 'no reason recorded'}")
    if only:  # a part of the run: its score alone
        return 0 if killed / total >= TARGET else 1
    missed = missed_targets({m: tuple(v) for m, v in modules.items()}, exceptions)
    for line in missed + ([f"{unexplained} survivors without a reason"] if unexplained else []):
        out(f"FAILED {line}")
    return 1 if missed or unexplained else 0


def check(record: Path | None = None, root: Path = ROOT) -> list[str]:
    """What is wrong with the newest committed record: empty when it scored the code and tests the
    work tree holds, meets its targets and every survivor it lists has a reason today."""
    records = sorted((root / "bench" / "records").glob("mutation-*.log"))
    record = record or (records[-1] if records else None)
    if record is None:
        return ["no mutation record under bench/records/: run `make mutate`"]
    lines = record.read_text().splitlines()
    scored = next((line.split()[1] for line in lines if line.startswith("scored ")), None)
    problems = []
    if scored != scored_digest(root):
        problems.append(f"{record.relative_to(root)}: it scored other code or tests than the work tree's "
                        f"(digest {scored} against {scored_digest(root)}): run `make mutate` and commit its record")
    why, exceptions = reasons(root / "bench" / "mutation-survivors.tsv")
    modules = {match[1]: (int(match[2]), int(match[3])) for match in map(MODULE_ROW.match, lines) if match}
    if not modules:
        problems.append(f"{record.relative_to(root)}: no score per module")
    problems += [f"{record.relative_to(root)}: {line}" for line in missed_targets(modules, exceptions)]
    unexplained = [match[1] for match in map(SURVIVOR.match, lines) if match and reason_for(match[1], why) is None]
    if unexplained:
        problems.append(f"{record.relative_to(root)}: {len(unexplained)} survivors without a reason in "
                        f"bench/mutation-survivors.tsv, e.g. {unexplained[0]}")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = check()
        print("\n".join(problems) or "the mutation record scored this work tree: every target met, every survivor explained")
        return 1 if problems else 0
    if argv == ["--digest"]:  # taken before mutmut runs, given back to --record as --scored
        print(scored_digest())
        return 0
    record = argv[1] if argv[:1] == ["--record"] and len(argv) in (2, 4) else None
    current = scored_digest()
    scored = argv[3] if record and argv[2:3] == ["--scored"] else current
    if scored != current:
        print(f"not recorded: the scored files changed while mutmut ran (digest {scored} before, {current} now); "
              "run `make mutate` again")
        return 1
    lines: list[str] = []
    only = argv[1] if argv[:1] == ["--only"] and len(argv) == 2 else None
    code = report(lines.append, only)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if record:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        with open(record, "w") as handle:
            handle.write(f"commit {commit}{' (with uncommitted changes)' if dirty else ''}\n"
                         f"scored {scored}\n{text}")
        print(f"recorded in {record}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
