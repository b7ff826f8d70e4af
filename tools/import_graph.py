"""The package's import graph: modules, lines, cycles and layers (the longest import chain,
counted in modules), read from the sources with the stage families' own scanner.

    python tools/import_graph.py            # summary; exits 1 on a cycle
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, "src")
from imgclf import codedeps  # noqa: E402

files = sorted(str(p) for p in Path("src/imgclf").rglob("*.py"))
graph = {f: [d for d in codedeps.imports(f) if not d.endswith("__init__.py") or d != "src/imgclf/__init__.py"]
         for f in files}


def layers(node, stack=()):
    if node in stack:
        raise SystemExit(f"import cycle: {' -> '.join([*stack[stack.index(node):], node])}")
    return 1 + max((layers(d, (*stack, node)) for d in graph[node]), default=0)


depth = {f: layers(f) for f in files}
lines = {f: len(Path(f).read_text().splitlines()) for f in files}
print(f"{len(files)} files, {sum(lines.values()):,} lines, {max(depth.values())} layers, no import cycle")
print("largest:", ", ".join(f"{Path(f).name} {n}" for f, n in sorted(lines.items(), key=lambda x: -x[1])[:5]))
print("deepest:", ", ".join(f"{Path(f).name} {n}" for f, n in sorted(depth.items(), key=lambda x: -x[1])[:5]))
