"""Every model selection a config makes, and the split each one looks at.

A paper table is only honest if what it reports was not chosen on the split it reports. Choices in
this pipeline: a linear probe's C (`methods.lp`: the best on the dataset's `val` role), a swept
recipe's grid point (`select`), a run's kept state (`keep: best_val | best_test` with
`eval_every`), the WiSE-FT alpha of an ensemble column (catalog targets with `ensemble: true`,
`cross_paper`, the general methods table of swept experiments: the best on `val`), gamma_PCV's
pseudo runs (scored on `val`) and the oracle gamma (on test, by definition: an oracle, labelled so).

`selections(config, plan)` lists them (`python -m robustft.config FILE` prints the list);
`problems(...)` names each that looks at the reported test split (the dataset's `test` role, or a
`val` role that is the same split) without the paper's own words for it: a recipe's or a target's
`select_on_test`, which every table reading the run marks. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import catalog
from .recipes import base_recipe, hparams_for, is_point, recipe_method, recipe_spec


@dataclass(frozen=True)
class Selection:
    what: str  # its LP C, its grid point, keep: best_val, its WiSE-FT alpha, its gamma_PCV, ...
    by: str  # the recipe or target that chooses (config path)
    dataset: str
    split: str  # the split it looks at
    on_test: bool  # that split is the dataset's reported test split
    marked: str | None = None  # the paper's words where it selected on test (select_on_test)

    def line(self) -> str:
        flag = ""
        if self.on_test:
            flag = f"  ON THE TEST SPLIT: {self.marked!r}" if self.marked else "  ON THE TEST SPLIT"
        what = self.what.removeprefix("its ")
        return f"{what:<16} {self.by:<46} {self.dataset:<18} {self.split}{flag}"


def _test_split(config: dict, dataset: str, role: str) -> tuple[str, bool]:
    roles = config["datasets"][dataset]["roles"]
    split = roles["test"] if role == "test" else roles[role]
    return split, split == roles["test"]


def selections(config: dict, plan) -> list[Selection]:
    """Every selection the config's runs and targets make, once each, in plan order."""
    found: dict[tuple, Selection] = {}

    def add(what: str, by: str, dataset: str, role: str, marked: str | None) -> None:
        split, on_test = _test_split(config, dataset, role)
        found.setdefault((what, by, dataset), Selection(what, by, dataset, split, on_test, marked))

    for run in plan.every_run:
        if is_point(run.recipe):
            continue
        spec = recipe_spec(config, run.recipe)
        by = f"recipes[{run.recipe!r}]" if spec else f"methods[{run.recipe!r}]"
        marked = spec.get("select_on_test")
        if recipe_method(config, run.recipe) == "lp":
            add("its LP C", by, run.dataset, "val", marked)
        if plan.is_swept(run.recipe):
            add(
                "its grid point",
                by,
                run.dataset,
                spec.get("select", {}).get("split", "val"),
                marked,
            )
        hp = hparams_for(config, base_recipe(run.recipe), run.backbone, run.dataset)
        keep = hp.get("keep", "last")
        if isinstance(keep, str) and keep != "last":
            add(f"keep: {keep}", by, run.dataset, "test" if keep == "best_test" else "val",
                marked)  # fmt: skip
    for run in plan.every_run:
        if any(v.startswith("pcv") for v in plan.variants(run)):
            add("its gamma_PCV", f"calibration.pcv ({run.recipe})", run.dataset, "val", None)
    for i, exp in enumerate(config["experiments"]):
        if exp.get("sweep", True) and any(plan.sweeps(plan.run(exp["dataset"], exp["backbone"], r))
                                          for r in exp["recipes"]):  # fmt: skip
            add(
                "its WiSE-FT alpha",
                f"experiments[{i}] (methods table)",
                exp["dataset"],
                "val",
                None,
            )
    for name, target in plan.catalog_targets.items():
        spec = target.spec
        if spec.get("ensemble") or spec["kind"] == "cross_paper":
            for dataset in sorted({r.dataset for r in target.runs}):
                add("its WiSE-FT alpha", f"catalog target {name!r}", dataset, "val",
                    spec.get("select_on_test"))  # fmt: skip
        if "calibration" in catalog.KINDS[spec["kind"]].reads:
            for run in target.runs:
                add(
                    "its oracle gamma",
                    "calibration (gamma*, every run)",
                    run.dataset,
                    "test",
                    "gamma*: the best Acc_Y on test, the paper's oracle row (labelled so)",
                )
    return list(found.values())


def problems(config: dict, plan) -> list[str]:
    """Each selection on the reported test split that no paper's words mark."""
    errors = []
    for sel in selections(config, plan):
        if sel.on_test and not sel.marked:
            roles = config["datasets"][sel.dataset]["roles"]
            errors.append(
                f"{sel.by} on dataset {sel.dataset!r}: selects {sel.what} on split "
                f"{sel.split!r}, which is the reported test split (roles: val {roles['val']!r}, "
                f"test {roles['test']!r}); give the dataset a validation split of its own (held "
                "out from training data: {carve: {from: <train split>, fraction: ...}}), or, "
                "where the paper selected on its test set, say so in the recipe (or target): "
                "select_on_test: <the paper's words>"
            )
    return errors


def listing(config: dict, plan) -> str:
    """The selections as lines: what is chosen, by whom, on which dataset and split."""
    rows = selections(config, plan)
    head = f"{'selection':<16} {'by':<46} {'dataset':<18} split"
    marked = sum(1 for s in rows if s.on_test)
    return "\n".join([f"model selections ({len(rows)}; {marked} on a reported test split, each "
                      "marked with its paper's words):", head, *(s.line() for s in rows)])  # fmt: skip
