"""Job functions stop before any work when an output cannot be written, naming the path."""

from __future__ import annotations

import os
import re

import pytest

from robustft.jobs import OutputNotWritableError, finetune, pretrain


def _blocked(tmp_path):
    """A path whose parent is a file: unwritable for every user, root included (a read-only
    directory is not: root ignores permission bits)."""
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")
    return blocker / "models" / "model.pt"


def test_finetune_fails_naming_an_unwritable_output_before_reading_anything(tmp_path):
    out = _blocked(tmp_path)
    # The backbone and dataset do not exist: the check must come before they are read.
    with pytest.raises(OutputNotWritableError, match=re.escape(f"cannot write {out}")):
        finetune("mini-clip", {}, "missing.pt", str(tmp_path / "none"), "ft", {}, 0, str(out),
                 str(tmp_path / "scratch"))  # fmt: skip


def test_finetune_checks_the_timing_file_and_the_scratch_checkpoint_too(tmp_path):
    blocked = _blocked(tmp_path)
    with pytest.raises(OutputNotWritableError, match=re.escape(str(blocked.parent / "train.ckpt"))):
        finetune("mini-clip", {}, "missing.pt", str(tmp_path / "none"), "ft", {}, 0,
                 str(tmp_path / "ok" / "model.pt"), str(blocked.parent))  # fmt: skip
    with pytest.raises(OutputNotWritableError, match=re.escape(str(blocked))):
        finetune("mini-clip", {}, "missing.pt", str(tmp_path / "none"), "ft", {}, 0,
                 str(tmp_path / "ok" / "model.pt"), str(tmp_path / "scratch"),
                 timing_out=str(blocked))  # fmt: skip


def test_pretrain_fails_naming_an_unwritable_output_before_reading_anything(tmp_path):
    out = _blocked(tmp_path)
    spec = {"family": "clip", "arch": {}, "pretrain": {}}
    with pytest.raises(OutputNotWritableError, match=re.escape(f"cannot write {out}")):
        pretrain("mini-clip", spec, str(tmp_path / "none"), str(out),
                 str(tmp_path / "info.json"), str(tmp_path / "scratch"))  # fmt: skip


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_unwritable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputNotWritableError, match=re.escape(str(ro / "model.pt"))):
            finetune("mini-clip", {}, "missing.pt", str(tmp_path / "none"), "ft", {}, 0,
                     str(ro / "model.pt"), str(tmp_path / "scratch"))  # fmt: skip
    finally:
        ro.chmod(0o755)
