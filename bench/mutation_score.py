"""Mutation score of the cores that decide numbers and reruns, after `mutmut run` (`make mutate`).

Prints killed / all mutants (a mutant no fast test reaches counts as not killed), the score per
function, and every survivor with its changed line and its reason from bench/mutation-survivors.tsv
(``<mutant name or fnmatch pattern><TAB><one line: equivalent, or the test it needs>``; "no reason
recorded" for a new one). Exit status 1 when the score is under the target (85 %).

    python bench/mutation_score.py [--record bench/records/mutation-<date>.log | --only PATTERN]

``--record`` also writes what it prints, headed by the commit, to that file; ``--only`` scores the
mutants whose names match PATTERN (fnmatch, as ``mutmut run PATTERN`` took them) and no others."""

from __future__ import annotations

import collections
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

TARGET = 0.85
REASONS = Path(__file__).with_name("mutation-survivors.tsv")


def reasons() -> dict[str, str]:
    if not REASONS.exists():
        return {}
    rows = (line.split("\t", 1) for line in REASONS.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): reason.strip() for name, reason in rows}


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


def main(argv: list[str]) -> int:
    lines: list[str] = []
    only = argv[1] if argv[:1] == ["--only"] and len(argv) == 2 else None
    code = report(lines.append, only)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if argv[:1] == ["--record"] and len(argv) == 2:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        with open(argv[1], "w") as handle:
            handle.write(f"commit {commit}{' (with uncommitted changes)' if dirty else ''}\n{text}")
        print(f"recorded in {argv[1]}")
    return code


def report(out, only: str | None = None) -> int:
    status = {name: state for name, state in results().items() if only is None or fnmatch.fnmatch(name, only)}
    if not status:
        out("no mutants: run `mutmut run` first (make mutate)")
        return 1
    by_function = collections.defaultdict(collections.Counter)
    for name, state in status.items():
        function = re.sub(r"__mutmut_\d+$", "", name).replace(".x_", ".", 1)
        by_function[function][state] += 1
    killed = sum(counter["killed"] for counter in by_function.values())
    total = sum(sum(counter.values()) for counter in by_function.values())
    out(f"mutation score: {killed}/{total} killed = {killed / total:.1%} (target {TARGET:.0%})")
    out(f"{'function':45s} {'killed':>7s} {'survived':>9s} {'no test':>8s} {'other':>6s}")
    for function, counter in sorted(by_function.items()):
        other = sum(counter.values()) - counter["killed"] - counter["survived"] - counter["no tests"]
        out(f"{function:45s} {counter['killed']:7d} {counter['survived']:9d} {counter['no tests']:8d} {other:6d}")
    survivors = [name for name, state in status.items() if state != "killed"]
    out(f"\n{len(survivors)} not killed:")
    why = reasons()
    for name in survivors:
        reason = why.get(name) or next((text for key, text in why.items() if fnmatch.fnmatch(name, key)), None)
        out(f"  {name} [{status[name]}]: {changed_line(name)}\n      why: {reason or 'no reason recorded'}")
    return 0 if killed / total >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
