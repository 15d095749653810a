"""Errors a user can act on: an unreadable pipeline file names itself and the command rebuilding it.

Deleting a corrupt intermediate file and rerunning `snakemake all` does not rebuild it: since
Snakemake 7.7 a missing file whose downstream results exist is not needed, and the run prints
"Nothing to be done". Forcing the file's own job does: `snakemake <file> --force` (for a file
inside a `directory()` output, such as a dataset split, the target is that directory). The
Snakefile records the run's config options (and, for a run with `--directory`, the Snakefile and
the working directory) in `ROBUSTFT_REBUILD_ARGS`, so the command is the one to type.
No heavy imports here: the Snakefile imports this module at parse time.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

REBUILD_ARGS_ENV = "ROBUSTFT_REBUILD_ARGS"
# Advice in library messages that is wrong for a corrupt file of ours (we wrote it: trusting it
# more, e.g. with pickle, does not make a truncated file whole).
_MISLEADING = ("weights_only", "allow_pickle", "pickle", "github.com", "issue")


class CorruptFileError(ValueError):
    """A file the pipeline wrote cannot be read back: truncated, overwritten or foreign."""


def rebuild_args(
    configfiles=(),
    config=None,
    snakefile: str | Path | None = None,
    directory: str | Path | None = None,
) -> str:
    """The options that make `snakemake <file> --force` use this run's workflow and config:
    `configfiles` and `config` (the `--configfile` files and the `--config` values as Snakemake
    parsed them), and the Snakefile and working directory where the run used `--directory`."""
    args = []
    if snakefile is not None and directory is not None:
        args += ["--snakefile", str(snakefile), "--directory", str(directory)]
    if configfiles:
        args += ["--configfile", *map(str, configfiles)]
    if config:  # JSON reads back as Snakemake parsed it (nested values stay strings)
        args += ["--config"]
        args += [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in config.items()]
    return shlex.join(args)


def rebuild_command(target: str | Path) -> str:
    """The command that rebuilds `target` (a pipeline output), for this run's options."""
    extra = os.environ.get(REBUILD_ARGS_ENV, "").strip()
    return " ".join(["snakemake", shlex.quote(str(target)), "--force", *([extra] if extra else [])])


def reason(err: BaseException) -> str:
    """A short, truthful reason: the exception type and the first sentence of its message, unless
    it gives advice meant for foreign files (load with pickle, file a library issue)."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    first = first.split(". ", 1)[0].rstrip(".")  # torch goes on: "This is an internal miniz..."
    if not first or any(word in first.lower() for word in _MISLEADING):
        return type(err).__name__
    return f"{type(err).__name__}: {first[:160]}"


def corrupt_message(what: str, path: str | Path, err: BaseException, target=None) -> str:
    """One line: which file, why it cannot be read, and the command that rebuilds it."""
    return (
        f"cannot read {what} {path} ({reason(err)}): the file is truncated or corrupt; "
        f"rebuild it with: {rebuild_command(target if target is not None else path)}"
    )


def error_summary(err: BaseException) -> str:
    """One line: the exception's type and message (its lines joined)."""
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


class ConfigError(ValueError):
    """The config is invalid; the message names the offending entry and the valid choices."""


def listed(names: list[str], limit: int = 3) -> str:
    """`a, b, c and 4 more`: the first few names of a long list."""
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def nonfinite_message(what: str, path: str | Path, names: list[str], target=None) -> str:
    """One line: which file holds NaN or inf values (where), and the command that rebuilds it."""
    return (
        f"{what} {path} holds NaN or inf values ({listed(names)}): it is corrupt or was written by a "
        f"diverged run, and would score like a model; rebuild it with: "
        f"{rebuild_command(target if target is not None else path)}"
    )
