"""Each configuration's tables in its own folder: two configs never overwrite each other's.

The tables and figures a config builds (the general ones: `results/metrics.csv`,
`results/tables/*`, `results/figures/*`; the catalog's: `results/papers/*`, `results/mine/*`) go
under `results/` for a config without a `name` (the default run's paths) and under
`results/<name>/` for one with it. Runs (`results/models`, `results/logits`) and resources
(datasets, backbones) stay shared by path: each is a function of its params, which Snakemake
compares, so a config that changes one retrains it rather than reading another's.

The guard: before any job writes a table into a folder, the folder records which config files
built it (`OWNER_FILE`); a run whose config files differ, and that would write tables there, stops
before any job and says how to give it its own folder. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

RESULTS = "results"
# results/ holds these for every config: a config's `name` may not take one of them.
RESERVED = ("models", "logits", "backbones", "analysis", "papers", "tables", "figures",
            "calibration", "mine")  # fmt: skip
OWNER_FILE = ".config-files"  # in a results folder: the config files whose tables it holds


def results_root(config: dict) -> str:
    """`results`, or `results/<name>` for a config with a `name`."""
    return f"{RESULTS}/{config['name']}" if config.get("name") else RESULTS


def logs_root(config: dict) -> str:
    return f"logs/{config['name']}" if config.get("name") else "logs"


def check_name(config: dict) -> list[str]:
    name = config.get("name")
    if name in RESERVED:
        return [
            f"name: {name!r} is a folder every config's results/ holds; pick another "
            f"(taken: {list(RESERVED)})"
        ]
    return []


def config_identity(configfiles, default: str | Path, root: str | Path) -> list[str]:
    """The config files of a run, as a folder records them: the default config first (always
    read first), then the `--configfile` files in order, each relative to the workflow's
    directory where it lies inside it. (`--config` values are tweaks of that config: not part.)"""
    root = Path(root).resolve()

    def name(path) -> str:
        path = Path(path).resolve()
        return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)

    files = [name(f) for f in configfiles or ()]
    first = name(default)
    return [first, *(f for f in files if f != first)]


def claim(root: str, identity: list[str], writes) -> None:
    """Before a run writes any of `writes` (the table files of this config under `root`): refuse
    when `root` holds the tables of other config files; else record this run's."""
    owner = Path(root) / OWNER_FILE
    if not writes:
        return
    if owner.is_file():
        recorded = owner.read_text().split("\n")
        recorded = [line for line in recorded if line]
        if recorded != identity:
            folder = f"{root}/"
            raise ConfigError(
                f"{folder} holds the tables of another configuration ({' + '.join(recorded)}); "
                f"this run's ({' + '.join(identity)}) would overwrite {len(writes)} of its files, "
                f"e.g. {sorted(writes)[0]}. Give this configuration its own results folder: add "
                "`name: <a name>` to its config file (its tables then go to results/<name>/; "
                "runs, datasets and backbones stay shared), or run it in its own directory "
                f"(--directory). To replace those tables on purpose, delete {owner}."
            )
    owner.parent.mkdir(parents=True, exist_ok=True)
    owner.write_text("".join(f"{line}\n" for line in identity))
