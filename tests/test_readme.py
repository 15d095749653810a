"""Every `snakemake …` and `make …` command the README shows works as written.

The README is parsed when the test runs (it keeps changing), so it cannot drift from the command
line again: `snakemake -n --configfile config/paper.yaml flyp_table1` once read the target as a
second config file and ended in a 27-line traceback. A command that would train runs as a dry
run (`-n`), a `make` target through `make -n` and the Snakemake command it expands to; each command
that cannot run here is listed below with the reason (reported as a skip, never silent). Offline,
in a copy of the repository's workflow files.

Also here: Snakemake reads `--configfile` files before the workflow, and stops on a missing,
malformed, empty or list-topped one with a traceback or a message naming no file; `make run`
checks them first (`python -m robustft.config --snakemake-args`), one line each.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robustft.config import configfile_problems

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = ROOT / "README.md"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ENV.pop("ROBUSTFT_REBUILD_ARGS", None)
COPIED = ("Snakefile", "workflow", "config", "profiles", "Makefile", "envs", "pyproject.toml")
# A user's own override file, named in the README's examples: written as a small valid one.
USER_FILES = {"my.yaml", "my-changes.yaml"}
USER_OVERRIDE = "plots:\n  wiseft_curve: {dpi: 100}\n"
# Commands that cannot run as written here, and why. A command is matched by its first words.
NOT_HERE = {
    "snakemake --report": "builds the HTML report of a finished run; tests/test_workflow.py's "
    "test_tables_figure_logs_and_report builds the smoke run's",
    "snakemake --directory rehearsal": "needs the rehearsal's fixtures and its loopback server "
    "(`python -m robustft.rehearsal prepare`, `serve`); tests/test_rehearsal.py runs the same "
    "overlay through `python -m robustft.rehearsal`",
}
PLACEHOLDER = re.compile(r"<[^>]+>|…|\.\.\.")
# `make` targets that are checked with `make -n` only: running them here would run the whole test
# suite (recursively) or every benchmark.
MAKE_DRY_ONLY = {"test": "runs the whole test suite", "bench": "runs every benchmark (minutes)",
                 "env": "installs the environment", "clean": "deletes results",
                 "rehearse": "rehearses the whole paper config (tests/test_rehearsal.py builds a "
                 "subset through its machinery)"}  # fmt: skip


def readme_commands(text: str | None = None) -> list[str]:
    """`snakemake …` and `make …` commands of the README: lines of code blocks (less a trailing
    `# comment`) and inline code spans (which may wrap lines), whitespace collapsed, in order."""
    text = README.read_text() if text is None else text
    found = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            found.append(re.split(r"\s+#\s", line.strip(), maxsplit=1)[0])
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    commands = [c.strip() for c in found if re.match(r"(snakemake|make)( |$)", c.strip())]
    return list(dict.fromkeys(commands))


def test_the_readme_shows_commands_and_the_parser_finds_wrapped_ones():
    commands = readme_commands()
    assert any(c.startswith("make run") for c in commands)
    assert any("config/paper.yaml" in c and c.startswith("snakemake") for c in commands)
    wrapped = "x (`snakemake flyp_table1 --configfile\n   config/paper.yaml`) and ```\nmake test  # all\n```"
    assert readme_commands(wrapped) == [
        "make test",
        "snakemake flyp_table1 --configfile config/paper.yaml",
    ]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The workflow's files in a scratch directory: a dry run writes .snakemake/ where it runs."""
    copy = tmp_path_factory.mktemp("readme") / "repo"
    copy.mkdir()
    for part in COPIED:
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, copy / part)
    for name in USER_FILES:
        (copy / name).write_text(USER_OVERRIDE)
    return copy


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _dry(words: list[str]) -> list[str]:
    """A Snakemake command that would run jobs, as a dry run; one that runs none, as written."""
    runs_nothing = {"-n", "--dry-run", "--dryrun", "--lint", "--unlock", "--help", "-h",
                    "--summary", "-S", "--detailed-summary", "-D", "--list-changes"}  # fmt: skip
    return words if runs_nothing & set(words) else [*words, "-n"]


_DONE: dict[tuple, str] = {}  # several README commands expand to the same dry run


def _snakemake(words: list[str], repo: Path) -> None:
    argv = [str(BIN / "snakemake"), *_dry(words[1:])]
    if tuple(argv) in _DONE:
        return
    proc = _run(argv, repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{shlex.join(words)} failed:\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    _DONE[tuple(argv)] = out


def _make(words: list[str], repo: Path) -> None:
    """`make -n` must expand the target; `run` also runs what it expands to (the config-file check
    and Snakemake, as a dry run)."""
    argv = ["make", "-n", *words[1:], f"VENV={BIN.parent}"]
    proc = _run(argv, repo, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    target = next((w for w in words[1:] if "=" not in w), "run")
    if target in MAKE_DRY_ONLY:
        pytest.skip(f"`{shlex.join(words)}` checked with make -n only: it {MAKE_DRY_ONLY[target]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith(str(BIN))]
    check = next(line for line in lines if "robustft.config --snakemake-args" in line)
    run = next(line for line in lines if line.startswith(str(BIN / "snakemake")))
    checked = _run(shlex.split(check), repo, timeout=60)
    assert checked.returncode == 0, checked.stderr
    _snakemake(["snakemake", *shlex.split(run)[1:]], repo)


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_works_as_written(command, repo):
    placeholder = PLACEHOLDER.search(command)
    if placeholder:
        pytest.skip(f"`{command}` is a template: {placeholder.group()} stands for the user's value")
    words = shlex.split(command)
    reason = next((r for start, r in NOT_HERE.items() if command.startswith(start)), None)
    if reason:
        pytest.skip(f"`{command}` is not run here: it {reason}")
    if words[0] == "make":
        _make(words, repo)
    else:
        _snakemake(words, repo)


# ---- --configfile files, checked before Snakemake reads them ------------------------------------
@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    files = {"malformed": "methods:\n  ft: {steps: 8\n", "empty": "", "list": "- a\n- b\n"}
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def test_each_bad_configfile_argument_is_one_line_naming_it(bad_files, tmp_path):
    cases = {
        "malformed": f"invalid YAML in config file {bad_files['malformed']}, line 3",
        "empty": f"config file {bad_files['empty']} is empty",
        "list": f"config file {bad_files['list']}: the top level must be a mapping",
    }
    for name, expected in cases.items():
        (problem,) = configfile_problems(["-n", "--configfile", str(bad_files[name])])
        assert problem.startswith(expected) and "\n" not in problem
    missing = tmp_path / "missing.yaml"
    assert configfile_problems([f"--configfile={missing}"]) == [f"config file {missing} not found"]
    # The README's old paper-scale command: the target taken for a second config file.
    (problem,) = configfile_problems(["-n", "--configfile", "config/paper.yaml", "flyp_table1"])
    assert problem == (
        "config file flyp_table1 not found; 'flyp_table1' looks like a target: Snakemake reads "
        "every word after --configfile as a config file, so put targets before --configfile"
    ), problem
    assert configfile_problems(["flyp_table1", "--configfile", str(ROOT / "config/paper.yaml"),
                                "--cores", "2"]) == []  # fmt: skip


@pytest.mark.slow
def test_make_run_names_a_bad_configfile_in_one_line_where_snakemake_prints_a_traceback(repo):
    """Snakemake itself: a 27-line traceback ending in `No such file or directory: 'flyp_table1'`;
    `make run` stops before it, with one line."""
    args = "--configfile config/paper.yaml flyp_table1"
    raw = _run([str(BIN / "snakemake"), "-n", *args.split()], repo)
    assert raw.returncode != 0 and "Traceback" in raw.stdout + raw.stderr  # what the check is for
    proc = _run(["make", "run", f"ARGS={args}", f"VENV={BIN.parent}", "-o",
                 f"{BIN.parent}/.installed"], repo, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert lines == [
        "config file flyp_table1 not found; 'flyp_table1' looks like a target: Snakemake reads "
        "every word after --configfile as a config file, so put targets before --configfile"
    ], proc.stderr
    assert "snakemake all" not in proc.stdout.split("robustft.config")[-1]  # it never started
