"""Content hashes that decide reruns: the code each workflow script runs, inputs of a checkpoint.

Edits are made to a copy of the package (`script_code(..., root=copy)`), never to the package."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from robustft import provenance
from robustft.methods import METHODS
from robustft.provenance import code_version, dataset_digest, modules_run_by, script_code

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"


def _jobs(root):
    """Code hash of every (script, method) job kind, as the rules compute them."""
    hashes = {}
    for script in sorted(SCRIPTS.glob("*.py")):
        if script.name == "finetune.py":
            for method in METHODS:
                hashes[f"finetune:{method}"] = script_code(script, [f"methods.{method}"], root)
        elif script.name == "build_target.py":  # its kind's builder module, loaded by name
            for module in ("paper_tables", "plots"):
                hashes[f"build_target:{module}"] = script_code(script, [module], root)
        else:
            hashes[script.stem] = script_code(script, (), root)
    return hashes


@pytest.fixture
def package(tmp_path):
    copy = tmp_path / "robustft"
    shutil.copytree(provenance.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _append(path: Path, text: str = "\n# an edit\n") -> None:
    path.write_text(path.read_text() + text)


def _changed(package, edit) -> set[str]:
    provenance.clear_cache()
    before = _jobs(package)
    edit(package)
    provenance.clear_cache()
    after = _jobs(package)
    return {job for job in before if before[job] != after[job]}


def test_a_copy_of_the_package_hashes_the_same(package):
    assert _jobs(package) == _jobs(provenance.PACKAGE)  # names and bytes only, not paths/mtimes
    assert code_version(package) == code_version()


def test_editing_a_method_changes_only_that_methods_fine_tuning(package):
    assert _changed(package, lambda p: _append(p / "methods" / "flyp.py")) == {"finetune:flyp"}
    assert _changed(package, lambda p: _append(p / "methods" / "lp.py")) == {"finetune:lp"}


def test_shared_code_changes_every_job_that_runs_it(package):
    finetuning = {f"finetune:{m}" for m in METHODS}
    # the loss CLIP pretraining and FLYP share
    assert _changed(package, lambda p: _append(p / "contrastive.py")) == {
        "pretrain_backbone", "finetune:flyp"}  # fmt: skip
    # (select: it rewrites the chosen point's model file, through methods.base)
    assert _changed(package, lambda p: _append(p / "models.py")) == finetuning | {
        "pretrain_backbone", "evaluate", "feature_distortion", "import_backbone", "select",
        "compare_standin"}  # fmt: skip
    # the figures, not the tables (each target's code: build_target.py and its builder's module)
    assert _changed(package, lambda p: _append(p / "plots.py")) == {"build_target:plots"}
    assert _changed(package, lambda p: _append(p / "tables.py")) == {
        "build_target:plots", "build_target:paper_tables"}  # fmt: skip
    assert _changed(package, lambda p: _append(p / "model_configs" / "robustft-mini-cnn.json",
                                               " ")) >= finetuning | {"pretrain_backbone"}  # fmt: skip


def test_published_weights_are_inputs_not_code(package):
    """The stand-ins' weights under data_files/standins are named by their sha256 in the config
    (import_backbone's params): republishing one reruns what reads it, not every job."""
    weights = package / "data_files" / "standins" / "mini-sup.pt"
    before = code_version(package)
    assert _changed(package, lambda p: weights.write_bytes(weights.read_bytes() + b"x")) == set()
    assert code_version(package) == before
    templates = package / "data_files" / "templates" / "sst2.json"  # other data files are code
    assert _changed(package, lambda p: _append(templates, " ")) != set()


def test_jobs_module_is_hashed_per_function(package):
    def edit_evaluate(p):
        jobs = p / "jobs.py"
        text = jobs.read_text()
        marker = '    """Save the logits of the artifact'
        assert marker in text
        jobs.write_text(text.replace(marker, "    # an edit\n" + marker))

    assert _changed(package, edit_evaluate) == {"evaluate"}

    def edit_logged(p):  # every script runs its job through `jobserver.run_job` and `logged`
        server = p / "jobserver.py"
        server.write_text(server.read_text().replace("def logged(", "def logged(  # an edit\n", 1))

    assert _changed(package, edit_logged) == set(_jobs(package))


def test_modules_run_by_a_script_follow_imports_but_not_other_jobs():
    finetune = modules_run_by(SCRIPTS / "finetune.py", ["methods.ft"])
    assert {"methods.base", "methods.ft", "training", "models", "data"} <= finetune
    # the core never runs the mini world (a data source among others) nor other jobs' code
    assert not {"world", "methods.flyp", "evaluate", "pretrain", "plots", "tables"} & finetune
    assert "models" not in modules_run_by(SCRIPTS / "prepare_dataset.py")
    # a table target: the logits' post-processing and its builder's module, never plots nor torch
    assert modules_run_by(SCRIPTS / "build_target.py", ["paper_tables"]) == {
        "", "jobserver", "errors", "paper_tables", "tables", "catalog", "analysis", "calibration",
        "finite", "outputs",
        "logits", "scoring"}  # fmt: skip


def test_code_hashes_are_cheap_enough_for_every_snakefile_parse():
    provenance.clear_cache()
    t0 = time.perf_counter()
    _jobs(None)
    assert time.perf_counter() - t0 < 2.0  # ~0.1 s here, on a busy machine


def test_dataset_digest_covers_meta_and_the_splits_read(tmp_path):
    (tmp_path / "meta.json").write_text("{}")
    for split in ("train", "val", "test"):
        np.savez(tmp_path / f"{split}.npz", x=np.arange(3))
    before = dataset_digest(tmp_path, ["train", "val"])
    assert set(before) == {"meta.json", "train", "val"}
    np.savez(tmp_path / "test.npz", x=np.arange(4))  # a split the job does not read
    assert dataset_digest(tmp_path, ["train", "val"]) == before
    np.savez(tmp_path / "val.npz", x=np.arange(4))
    assert dataset_digest(tmp_path, ["train", "val"])["val"] != before["val"]
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"123")
    listed = dataset_digest(tmp_path, ["images"])["images"]
    (folder / "b.png").write_bytes(b"4")
    assert dataset_digest(tmp_path, ["images"])["images"] != listed
