"""What a failed or interrupted run deleted, and the one command that restores it.

Snakemake deletes a job's existing outputs when the job starts (a `--force`/`--forcerun` rerun, a
changed param). If the run then fails, is interrupted or is killed, those outputs stay missing,
and a plain `snakemake all` does not rebuild them: since Snakemake 7.7 a missing file whose
downstream results exist is not needed ("Nothing to be done"). So the Snakefile records, when a
run starts, the existing outputs of every job it will run (`record`, onstart); on error it names
those now missing and the command that rebuilds exactly them (`hint`, onerror); every later
invocation repeats that hint while any is missing (`pending_hint`, parse time: a killed run has no
onerror); a successful run clears what it restored (`settle`, onsuccess). No heavy imports.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

STATE = Path(".snakemake") / "robustft" / "deleted-outputs.json"
SHOWN = 8  # files listed in a message; the script holds the whole command


def _read(state: Path = STATE) -> dict:
    try:
        return json.loads(state.read_text())
    except (OSError, ValueError):
        return {}


def _write(record: dict, state: Path = STATE) -> None:
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(state)


def _missing(record: dict) -> list[str]:
    return [f for f in record.get("outputs", []) if not os.path.lexists(f)]


def record(dag, command: list[str], rebuild_args: str, state: Path = STATE) -> None:
    """onstart: the outputs this run may delete (those of the jobs it will run that exist now),
    added to any an earlier run left missing."""
    previous = _read(state)
    outputs = set(_missing(previous))
    for job in dag.needrun_jobs():
        outputs.update(str(f) for f in job.output if os.path.lexists(f))
    if outputs:
        _write({"command": command, "rebuild_args": rebuild_args, "outputs": sorted(outputs)},
               state)  # fmt: skip
    elif state.exists():
        state.unlink()


def settle(state: Path = STATE) -> None:
    """onsuccess: forget what now exists; forget the record once nothing of it is missing."""
    current = _read(state)
    missing = _missing(current)
    if not missing:
        state.unlink(missing_ok=True)
        _script(state).unlink(missing_ok=True)
    else:
        _write({**current, "outputs": missing}, state)


def restore_command(missing: list[str], rebuild_args: str) -> str:
    return " ".join(["snakemake", *map(shlex.quote, missing), "--force",
                     *([rebuild_args] if rebuild_args else [])])  # fmt: skip


def _script(state: Path) -> Path:
    return state.with_name("restore-outputs.sh")


def _message(record: dict, missing: list[str], lead: str, state: Path) -> str:
    command = restore_command(missing, record.get("rebuild_args", ""))
    if len(missing) > SHOWN:  # the whole command in a script, the message stays short
        script = _script(state)
        script.write_text(f"#!/bin/sh\n# restores what `{_shown(record)}` deleted\n{command}\n")
        shown = ", ".join(missing[:SHOWN]) + f" and {len(missing) - SHOWN} more"
        how = f"sh {script}   (snakemake <those {len(missing)} files> --force ...)"
    else:
        shown, how = ", ".join(missing), command
    return (
        f"{lead}: {len(missing)} output(s) it deleted are missing ({shown}); a plain "
        "`snakemake all` will not rebuild those whose downstream results exist (it reports "
        f"nothing to do). Restore them with:\n    {how}"
    )


def hint(state: Path = STATE) -> str | None:
    """onerror: the message naming what this run deleted and the command restoring it."""
    current = _read(state)
    missing = _missing(current)
    if not missing:
        return None
    return _message(current, missing, f"robustft: the run `{_shown(current)}` stopped", state)


def pending_hint(state: Path = STATE) -> str | None:
    """At parse time: an earlier run (failed, interrupted or killed) left outputs missing."""
    current = _read(state)
    missing = _missing(current)
    if not missing:
        return None
    lead = f"robustft: an earlier run (`{_shown(current)}`) did not finish"
    return _message(current, missing, lead, state)


def _shown(record: dict) -> str:
    """The recorded command as typed: `snakemake` and its arguments."""
    return shlex.join(["snakemake", *record.get("command", [])[1:]])
