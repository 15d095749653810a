"""The package's import graph: no cycle, every import points down the layers, and the core never
imports the mini world. Imports inside functions count too (a cycle hidden behind a late import is
still a cycle). A new module must be given a layer here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robustft"

# Low to high: a module may import its own layer and the ones below it.
LAYERS = {
    # plain data and helpers everything reads (torch-free)
    "foundation": {"", "errors", "datafiles", "presets", "provenance", "resources", "methods",
                   "finite", "outputs", "classspace"},
    # the science: data, models, methods, training, evaluation, scoring, calibration
    "core": {"preprocess", "shards", "data", "heads", "contrastive", "mini_cnn", "models",
             "distributed", "training", "wiseft", "methods.base", "methods.zeroshot", "methods.lp",
             "methods.ft", "methods.lpft", "methods.l2sp", "methods.flyp", "methods.coretuning",
             "evaluate", "scoring", "calibration", "logits", "analysis", "pretrain"},
    # where data and weights come from: fetched files, formats, user folders, the mini world
    "sources": {"world", "sources", "sources.fetch", "sources.formats", "sources.folders",
                "sources.checkpoints", "sources.registry", "sources.spec", "sources.generated",
                "sources.standins", "sources.example",
                *(f"sources.{p.stem}" for p in (PACKAGE / "sources").glob("format_*.py"))},
    # the papers: target kinds, their table and figure builders
    "papers": {"catalog", "tables", "paper_tables", "plots"},
    # config -> plan: reading, checking, planning (the Snakefile's parse)
    "planning": {"configfile", "recipes", "selections", "checks", "config", "plan", "forms",
                 "resolution", "namespace"},
    # running jobs
    "jobs": {"jobs", "jobserver", "recovery", "standins"},
    # the paper-scale rehearsal: fixtures of a config's data and checkpoints, its overlay, its run
    "rehearsal": {"rehearsal", *(f"rehearsal.{p.stem}" for p in (PACKAGE / "rehearsal").glob("*.py")
                                 if p.stem != "__init__")},
}  # fmt: skip
MINI_WORLD = {"world", "sources.generated"}  # one data source among the real ones


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known) -> set[str]:
    """The package modules `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("robustft"):
                module = node.module.removeprefix("robustft").lstrip(".")
            else:
                continue
            candidates = [module, *(f"{module}.{a.name}".lstrip(".") for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name.removeprefix("robustft").lstrip(".") for a in node.names
                          if a.name.startswith("robustft")]  # fmt: skip
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(name: str) -> int:
    for rank, members in enumerate(LAYERS.values()):
        if name in members:
            return rank
    raise KeyError(name)


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in modules() if not any(name in m for m in LAYERS.values()))
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_no_import_cycle():
    edges = graph()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack += edges[node]
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if reaches(b, a)})
    assert not cycles, f"import cycles: {cycles}"


def test_imports_point_down_the_layers():
    upward = [
        f"{name} ({list(LAYERS)[layer_of(name)]}) imports {other} ({list(LAYERS)[layer_of(other)]})"
        for name, others in graph().items()
        for other in others
        if layer_of(other) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_the_core_never_imports_the_mini_world():
    edges = graph()
    below_sources = {m for layer in ("foundation", "core") for m in LAYERS[layer]}
    offenders = [f"{name} imports {sorted(edges[name] & MINI_WORLD)}"
                 for name in sorted(edges) if name in below_sources and edges[name] & MINI_WORLD]  # fmt: skip
    assert not offenders, offenders
    # nor does planning: a generated dataset's config is checked by its source, loaded by name
    planning = {m for layer in ("planning", "papers") for m in LAYERS[layer]}
    assert not [n for n in planning if edges.get(n, set()) & MINI_WORLD]


def test_the_graph_walk_sees_late_imports():
    """A function-level import is an edge (data <-> shards was a cycle hidden that way)."""
    edges = graph()
    assert "shards" in edges["data"] and "formats" not in edges["sources.folders"]
    assert "sources.formats" in edges["sources.folders"]
    assert "data" in edges["sources.generated"]  # imported inside generate_mini


def test_the_rules_stay_thin():
    """What the DAG holds is planned in robustft.plan; common.smk keeps paths and thin functions."""
    common = PACKAGE.parents[1] / "workflow" / "rules" / "common.smk"
    assert len(common.read_text().splitlines()) < 250
