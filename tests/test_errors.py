"""Errors go where the user looks, and say what to do.

A failing job's log ends with its traceback and a one-line summary; logs carry no open_clip
random-init notice; an unreadable pipeline file gets one message naming it and the command that
rebuilds it (and that command does rebuild it); a malformed config file is named with its line; a
quoted number in a config file is a config error, not a job failure; what to type after a killed
run (--unlock, --rerun-incomplete) works."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from robustft.config import ConfigError, check_config, read_config_file
from robustft.errors import REBUILD_ARGS_ENV, CorruptFileError, rebuild_args, rebuild_command
from tests.test_workflow import snakemake, snakemake_cmd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = ROOT / "config" / "smoke.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ENV.pop(REBUILD_ARGS_ENV, None)

MISLEADING = ("allow_pickle", "weights_only", "file an issue", "github.com", "delete it")


def truncate(path: Path, keep: float = 0.5) -> None:
    """What a killed copy or a full disk leaves: the first part of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble(path: Path) -> None:
    """A file overwritten with something else (no zip or numpy header left)."""
    path.write_bytes(b"not a pipeline file\n" * 64)


# ---- job logs -----------------------------------------------------------------------------------
def test_logged_job_log_ends_with_the_traceback_and_a_summary(tmp_path):
    from robustft.jobs import logged

    log = tmp_path / "logs" / "job.log"

    def fail():
        raise ValueError("the input is bad\nsecond line")

    with pytest.raises(ValueError, match="the input is bad"):
        with logged(log):
            print("device: cpu")
            fail()
    lines = log.read_text().splitlines()
    assert lines[0] == "device: cpu"
    assert "Traceback (most recent call last):" in lines
    # The traceback (ending with the exception as Python prints it), then the one-line summary.
    assert lines[-3:] == [
        "ValueError: the input is bad",
        "second line",
        "job failed: ValueError: the input is bad second line",
    ]
    assert any("in fail" in line for line in lines)  # the frame that raised
    assert sys.stdout is not None and sys.stderr is not None  # streams restored


def test_logged_success_leaves_no_error_in_the_log(tmp_path):
    from robustft.jobs import logged

    log = tmp_path / "ok.log"
    with logged(log):
        print("done")
    assert log.read_text() == "done\n"


def test_building_a_clip_model_logs_no_random_init_notice_and_keeps_other_warnings(caplog):
    from robustft.models import _DropRandomInitNotice, build_clip

    arch = {"library": "open_clip", "name": "robustft-mini-cnn"}
    with caplog.at_level(logging.WARNING):
        build_clip(arch)
    assert "No pretrained weights loaded" not in caplog.text
    # Scoped: outside model building the root logger (open_clip's) filters nothing.
    assert not any(isinstance(f, _DropRandomInitNotice) for f in logging.getLogger().filters)
    record = logging.LogRecord(
        "root", logging.WARNING, "", 0, "Model x initialized partially.", (), None
    )
    assert _DropRandomInitNotice().filter(record)  # other open_clip warnings pass


# ---- unreadable files: one message, naming the file and the rebuild command ---------------------
def assert_actionable(message: str, path, target) -> None:
    assert "cannot read " in message and str(path) in message
    assert f"rebuild it with: snakemake {target} --force" in message
    assert "\n" not in message
    assert not any(word in message for word in MISLEADING), message


@pytest.mark.parametrize("damage", [truncate, garble])
def test_corrupt_dataset_split_names_the_file_and_the_dataset_rebuild(
    tiny_dataset, tmp_path, damage
):
    from robustft.data import load_split

    dataset = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, dataset)
    damage(dataset / "val.npz")
    with pytest.raises(CorruptFileError) as err:
        load_split(dataset, "val")
    # The split lives inside the dataset's directory() output: the target is the directory.
    assert_actionable(str(err.value), dataset / "val.npz", dataset)


def test_corrupt_dataset_description_names_the_file(tiny_dataset, tmp_path):
    from robustft.data import DatasetInfo

    dataset = tmp_path / "tiny"
    shutil.copytree(tiny_dataset, dataset)
    truncate(dataset / "meta.json")
    with pytest.raises(CorruptFileError) as err:
        DatasetInfo.read(dataset)
    assert_actionable(str(err.value), dataset / "meta.json", dataset)


@pytest.mark.parametrize("damage", [truncate, garble])
def test_corrupt_model_file_names_the_file_and_the_rebuild(tmp_path, damage):
    from robustft.methods.base import Artifact

    path = tmp_path / "model.pt"
    Artifact("classifier", {"head.weight": torch.zeros(3, 4)}, meta={"method": "lp"}).save(path)
    assert Artifact.load(path).meta == {"method": "lp"}
    damage(path)
    with pytest.raises(CorruptFileError) as err:
        Artifact.load(path)
    assert_actionable(str(err.value), path, path)


@pytest.mark.parametrize("damage", [truncate, garble])
def test_corrupt_checkpoint_names_the_file_and_the_rebuild(tmp_path, damage):
    from robustft.models import CheckpointKeyError, read_state_dict

    path = tmp_path / "backbone.pt"
    torch.save({"w": torch.zeros(64, 64)}, path)
    damage(path)
    with pytest.raises(CheckpointKeyError) as err:  # still a CheckpointKeyError, for callers
        read_state_dict(path)
    assert isinstance(err.value, CorruptFileError)
    assert_actionable(str(err.value), path, path)


@pytest.mark.parametrize("damage", [truncate, garble])
def test_corrupt_logits_file_names_the_file_and_the_rebuild(tmp_path, damage):
    from robustft.logits import Logits, save_logits

    path = tmp_path / "seed0.npz"
    split = {"logits": np.zeros((1, 8, 3)), "labels": np.zeros(8)}
    save_logits(path, [1.0], {"test": split}, {"method": "ft"})
    assert Logits(path).alphas == [1.0]
    damage(path)
    with pytest.raises(CorruptFileError) as err:
        Logits(path)
    assert_actionable(str(err.value), path, path)


def test_rebuild_command_repeats_the_runs_options(monkeypatch):
    monkeypatch.delenv(REBUILD_ARGS_ENV, raising=False)
    assert rebuild_command("results/x.npz") == "snakemake results/x.npz --force"
    args = rebuild_args(
        configfiles=["/c/smoke.yaml"],
        config={"wiseft": {"alphas": ["0", "1"]}, "scratch": "my scratch"},
        snakefile="/repo/Snakefile",
        directory="/work dir",
    )
    monkeypatch.setenv(REBUILD_ARGS_ENV, args)
    assert rebuild_command("results/x.npz") == (
        "snakemake results/x.npz --force --snakefile /repo/Snakefile --directory '/work dir' "
        '--configfile /c/smoke.yaml --config \'wiseft={"alphas": ["0", "1"]}\' '
        "'scratch=my scratch'"
    )
    # The --config values read back exactly as Snakemake parsed them the first time.
    from snakemake.cli import parse_config

    words = shlex.split(args)
    assert parse_config(words[words.index("--config") + 1 :]) == {
        "wiseft": {"alphas": ["0", "1"]},
        "scratch": "my scratch",
    }


# ---- config files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "methods:\n  ft: {steps: 8\n  lp: {}\n",
            "line 3, column 5: while parsing a flow mapping (from line 2)",
        ),
        ("wiseft:\n\talphas: [0, 1]\n", "line 2, column 1: "),
        ("a: b: c\n", "line 1, column 5: mapping values are not allowed here"),
        (  # YAML keeps the last silently; a second `recipes:` would drop the first's recipes
            "recipes:\n  a: {method: ft}\nwiseft: {alphas: [0, 1]}\nrecipes:\n  b: {method: ft}\n",
            "line 4, column 1: while reading the mapping from line 1: key 'recipes' is given "
            "twice (first on line 1)",
        ),
    ],
)
def test_malformed_config_file_names_the_file_and_line(tmp_path, text, where):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        read_config_file(path)
    assert str(err.value).startswith(f"invalid YAML in config file {path}, {where}")
    assert "\n" not in str(err.value)


def test_config_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=f"config file {path}: the top level must be a mapping"):
        read_config_file(path)


def test_only_command_line_strings_are_coerced():
    config = yaml.safe_load(SMOKE.read_text())
    config["methods"]["ft"]["steps"] = "8"  # a quoted number written in a YAML file
    with pytest.raises(ConfigError, match=r"\['ft'\]\['steps'\]: '8' is not of type 'integer'"):
        check_config(config, SCHEMA, command_line={})
    # The same string handed over by --config 'methods={"ft": {"steps": 8}}' is a number.
    config["methods"]["ft"]["steps"] = "8"
    check_config(config, SCHEMA, command_line={"methods": {"ft": {"steps": "8"}}})
    assert config["methods"]["ft"]["steps"] == 8


# ---- through Snakemake --------------------------------------------------------------------------
def run_suggested(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a command a message suggests, word for word (with this venv's snakemake)."""
    words = shlex.split(command)
    assert words[0] == "snakemake"
    return subprocess.run(
        [str(BIN / "snakemake"), *words[1:]], cwd=cwd, env=ENV, capture_output=True, text=True
    )


def suggested_command(text: str) -> str:
    line = next(line for line in reversed(text.splitlines()) if "rebuild it with: " in line)
    return line.split("rebuild it with: ", 1)[1].strip()


MODEL = "results/models/mini/mini-clip/zeroshot/seed0/model.pt"
LOGITS = "results/logits/mini/mini-clip/zeroshot/seed0.npz"
EVAL_LOG = "logs/evaluate/mini/mini-clip/zeroshot/seed0.log"
SMALL = {  # the smoke config, cut to one cheap run: mini-clip's zero-shot model, evaluated
    "experiments": [{"backbone": "mini-clip", "dataset": "mini", "methods": ["zeroshot"]}],
    "backbones": {"mini-clip": {"pretrain": {"steps": 2, "warmup_steps": 1}}},
}


# Run the target's own job, reading the damaged file, and nothing upstream of it.
ONLY = ("--force", "--rerun-triggers", "mtime")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished small run: dataset, backbone, model, logits and metrics."""
    configs = tmp_path_factory.mktemp("configs") / "small.yaml"
    configs.write_text(yaml.safe_dump(SMALL))
    args = ["--configfile", str(SMOKE), str(configs)]
    workdir = tmp_path_factory.mktemp("built")
    snakemake(workdir, "results/smoke/metrics.csv", *args)
    return workdir, args


@pytest.fixture
def run_copy(built, tmp_path) -> tuple[Path, list[str]]:
    workdir, args = built
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)
    return copy, args


@pytest.mark.slow
def test_failing_job_log_ends_with_its_error_and_the_fix_works(run_copy):
    """A corrupt model.pt: the evaluate job fails; its log ends with the traceback and a one-line
    summary naming the file and the command; that command rebuilds the file."""
    workdir, args = run_copy
    truncate(workdir / MODEL)
    proc = snakemake(workdir, LOGITS, *ONLY, *args, check=False)
    assert proc.returncode != 0
    log = (workdir / EVAL_LOG).read_text()
    lines = log.rstrip("\n").splitlines()
    summary = lines[-1]
    assert summary.startswith(f"job failed: CorruptFileError: cannot read model file {MODEL} (")
    assert_actionable(summary, MODEL, MODEL)
    assert lines[-2].startswith("robustft.errors.CorruptFileError: cannot read model file")
    assert "Traceback (most recent call last):" in log
    assert "No pretrained weights loaded" not in log  # the backbone was built and loaded before
    assert "cannot read model file" in proc.stdout + proc.stderr  # the terminal shows it too

    command = suggested_command(summary)
    assert f"--configfile {SMOKE}" in command  # this run's config, not the default
    fixed = run_suggested(command, Path.home())  # from anywhere: it names its directory
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-4000:]
    from robustft.methods.base import Artifact

    assert Artifact.load(workdir / MODEL).meta["method"] == "zeroshot"
    snakemake(workdir, LOGITS, "--force", *args)  # the job that failed now runs


@pytest.mark.slow
def test_corrupt_dataset_split_fails_with_the_dataset_rebuild_that_works(run_copy):
    workdir, args = run_copy
    split = workdir / "resources/datasets/mini/test.npz"
    original = split.read_bytes()
    truncate(split)
    proc = snakemake(workdir, LOGITS, *ONLY, *args, check=False)
    assert proc.returncode != 0
    summary = (workdir / EVAL_LOG).read_text().rstrip("\n").splitlines()[-1]
    target = "resources/datasets/mini"
    assert summary.startswith(
        f"job failed: CorruptFileError: cannot read dataset split {target}/test.npz"
    )
    assert_actionable(summary, f"{target}/test.npz", target)
    fixed = run_suggested(suggested_command(summary), workdir)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-4000:]
    assert split.read_bytes() == original  # generation is deterministic: the very same file


@pytest.mark.slow
def test_corrupt_logits_fails_the_metrics_job_with_the_rebuild_that_works(run_copy):
    workdir, args = run_copy
    truncate(workdir / LOGITS)
    proc = snakemake(workdir, "results/smoke/metrics.csv", *ONLY, *args, check=False)
    assert proc.returncode != 0
    summary = (workdir / "logs/smoke/metrics.log").read_text().rstrip("\n").splitlines()[-1]
    assert summary.startswith(f"job failed: CorruptFileError: cannot read logits file {LOGITS}")
    assert_actionable(summary, LOGITS, LOGITS)
    fixed = run_suggested(suggested_command(summary), workdir)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-4000:]
    from robustft.logits import Logits

    assert Logits(workdir / LOGITS).alphas == [1.0]


@pytest.mark.slow
def test_deleting_a_file_and_rerunning_does_not_rebuild_it(run_copy):
    """Why messages say `--force`: the file's downstream results exist, so Snakemake (>= 7.7)
    does not need the deleted file and does nothing."""
    workdir, args = run_copy
    (workdir / MODEL).unlink()
    proc = snakemake(workdir, "results/smoke/metrics.csv", *args)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert not (workdir / MODEL).exists()


@pytest.mark.slow
def test_malformed_default_config_names_file_and_line(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for part in ("Snakefile", "workflow", "config", "profiles"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, repo / part)
    config = repo / "config" / "config.yaml"
    config.write_text(config.read_text().replace("wiseft:\n", "wiseft: [\n", 1))
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-n"], cwd=repo, env=ENV, capture_output=True, text=True
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"invalid YAML in config file {config}, line " in out, out
    assert "Traceback" not in out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"methods": {"ft": {"steps": "8"}}},
            "config['methods']['ft']['steps']: '8' is not of type 'integer'",
        ),
        (
            {"methods": {"ft": {"batch_size": 4096}}},
            "batch_size 4096 exceeds the 480 examples of dataset 'mini'",
        ),
    ],
)
def test_config_file_values_that_would_fail_a_job_stop_before_any_job(tmp_path, override, expected):
    extra = tmp_path / "mine.yaml"
    extra.write_text(yaml.safe_dump(override))
    workdir = tmp_path / "w"
    workdir.mkdir()
    proc = snakemake(workdir, "all", "--configfile", str(SMOKE), str(extra), check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not any((workdir / d).exists() for d in ("resources", "results", "logs"))


@pytest.mark.slow
def test_command_line_numbers_are_still_numbers(tmp_path):
    proc = snakemake(
        tmp_path,
        "all",
        "-n",
        "--configfile",
        str(SMOKE),
        "--config",
        'methods={"ft": {"steps": 8}}',
    )
    assert proc.returncode == 0


@pytest.mark.slow
def test_after_a_killed_run_unlock_then_rerun_incomplete(run_copy):
    """What the README tells a user to type after a killed run, checked: the lock is removed with
    --unlock, and a job killed mid-write (a dataset directory) needs --rerun-incomplete."""
    workdir, args = run_copy
    dataset, log = "resources/datasets/mini", workdir / "logs/prepare_dataset/mini.log"
    log.unlink()
    proc = subprocess.Popen(
        snakemake_cmd(workdir, dataset, "--force", *args),
        cwd=workdir,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and "images in" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)  # Snakemake removes the old log before the job starts
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the job die without cleaning up
    proc.wait()
    assert not (workdir / dataset / "meta.json").exists(), "the job finished before the kill"

    # Snakemake checks incomplete outputs while building the DAG, before it takes the lock.
    incomplete = snakemake(workdir, "results/smoke/metrics.csv", *args, check=False)
    assert incomplete.returncode != 0
    assert "IncompleteFilesException" in incomplete.stderr
    assert "--rerun-incomplete" in incomplete.stderr
    locked = snakemake(
        workdir, "results/smoke/metrics.csv", "--rerun-incomplete", *args, check=False
    )
    assert locked.returncode != 0 and "LockException" in locked.stderr
    assert "--unlock" in locked.stderr
    snakemake(workdir, "--unlock")  # no config needed: it only removes .snakemake/locks
    snakemake(workdir, "results/smoke/metrics.csv", "--rerun-incomplete", *args)
    assert (workdir / dataset / "meta.json").exists()


def test_config_files_can_be_checked_before_snakemake_reads_them(tmp_path, capsys):
    """Snakemake parses --configfile files before the workflow runs and does not name a malformed
    one; `python -m robustft.config FILES` does, and runs the whole config check."""
    from robustft.config import main

    assert main([str(SMOKE)]) == 0
    broken = tmp_path / "mine.yaml"
    broken.write_text("methods:\n  ft: {steps: 8\n")
    assert main([str(SMOKE), str(broken)]) == 1
    assert f"invalid YAML in config file {broken}, line 3" in capsys.readouterr().err
    quoted = tmp_path / "quoted.yaml"
    quoted.write_text('methods:\n  ft: {steps: "8"}\n')
    assert main([str(SMOKE), str(quoted)]) == 1
    assert "'8' is not of type 'integer'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.yaml")]) == 1
    assert f"config file {tmp_path / 'missing.yaml'} not found" in capsys.readouterr().err


# ---- issue 22: no wrong result without an error, no hang, the restore command after a stop -------
@pytest.mark.slow
def test_a_diverging_run_fails_its_job_and_no_table_is_built(run_copy, tmp_path):
    """`ft: {lr: 1.0e+30}` used to log loss=nan, and its evaluation and table succeeded."""
    workdir, args = run_copy
    extra = tmp_path / "diverge.yaml"
    extra.write_text(yaml.safe_dump({
        "name": "diverge",  # its own tables folder (results/smoke/ holds the smoke config's)
        "experiments": [{"backbone": "mini-clip", "dataset": "mini", "methods": ["ft"]}],
        "methods": {"ft": {"lr": 1.0e30}},
    }))  # fmt: skip
    proc = snakemake(workdir, "results/diverge/tables/methods.csv", *args, str(extra), check=False)
    assert proc.returncode != 0
    summary = (workdir / "logs/finetune/mini/mini-clip/ft/seed0.log").read_text().splitlines()[-1]
    assert summary.startswith(
        "job failed: DivergedError: training diverged: run 'ft' (ft, main) of dataset 'mini', "
        "backbone 'mini-clip', seed 0, step "
    ), summary
    assert "base lr 1e+30" in summary and "To fix: lower its `lr`" in summary
    assert not (workdir / "results/models/mini/mini-clip/ft/seed0/model.pt").exists()
    assert not (workdir / "results/diverge/tables/methods.csv").exists()
    assert not list(workdir.rglob("*.tmp")) and not list((workdir / "scratch").rglob("*.ckpt"))


@pytest.mark.slow
def test_a_model_file_holding_nan_fails_its_evaluation_with_the_rebuild_that_works(run_copy):
    """A model file corrupted but loadable used to be scored at chance level."""
    workdir, args = run_copy
    raw = torch.load(workdir / MODEL, weights_only=True)
    name = next(k for k, v in raw["state_dict"].items() if v.is_floating_point())
    raw["state_dict"][name] = torch.full_like(raw["state_dict"][name], float("nan"))
    torch.save(raw, workdir / MODEL)
    proc = snakemake(workdir, LOGITS, *ONLY, *args, check=False)
    assert proc.returncode != 0
    summary = (workdir / EVAL_LOG).read_text().rstrip("\n").splitlines()[-1]
    assert summary.startswith(
        f"job failed: CorruptFileError: model file {MODEL} holds NaN or inf values ({name}"
    ), summary
    fixed = run_suggested(suggested_command(summary), workdir)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-4000:]
    from robustft.methods.base import Artifact

    assert Artifact.load(workdir / MODEL).meta["method"] == "zeroshot"


def _jobserver_of(snakemake_pid: int, timeout: float = 120) -> int:
    """The pid of the job server a Snakemake process started (its --parent)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"robustft.jobserver" in argv and str(snakemake_pid).encode() in argv:
                return int(proc.name)
        time.sleep(0.05)
    raise AssertionError("no job server started")


def _job_script(session: int, script: str, timeout: float = 300) -> int:
    """The pid of a job's script process in a session (a Snakemake run started in its own)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                if os.getsid(int(proc.name)) != session:
                    continue
                if script.encode() in (proc / "cmdline").read_bytes():
                    time.sleep(1.0)  # past its imports: connected, waiting
                    return int(proc.name)
            except (ValueError, OSError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no {script} job started")


@pytest.mark.slow
def test_a_stopped_job_server_does_not_hang_the_run(run_copy):
    """A real SIGSTOP of the run's job server, as soon as it exists: the run's job runs in-process
    instead of waiting forever, and the run ends (its onsuccess continues and stops the server)."""
    workdir, args = run_copy
    proc = subprocess.Popen(snakemake_cmd(workdir, LOGITS, *ONLY, *args), cwd=workdir, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    server = _jobserver_of(proc.pid)
    sock = Path(tempfile.gettempdir()) / f"robustft-jobs-{proc.pid}.sock"
    deadline = time.time() + 120
    while time.time() < deadline and not sock.exists():
        time.sleep(0.02)  # bound before its imports: jobs that come now wait for it
    os.kill(server, signal.SIGSTOP)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGCONT)
    assert proc.returncode == 0, out[-3000:]
    log = (workdir / EVAL_LOG).read_text()
    assert f"the job server (pid {server}, " in log
    assert "is stopped (SIGSTOP or a debugger): running the job in-process" in log
    deadline = time.time() + 60
    while time.time() < deadline and Path(f"/proc/{server}").exists():
        if (Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z":
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text()


@pytest.mark.slow
def test_an_interrupted_forced_run_names_the_command_that_restores_what_it_deleted(run_copy):
    """`--forcerun evaluate` deletes the logits when the job starts; Ctrl-C then leaves them
    missing, and a plain run does nothing. The run's message, and every later run's, name the
    command that restores them; it does, and the hint is gone."""
    workdir, args = run_copy
    target = "results/smoke/metrics.csv"
    # SIGINT as a terminal delivers it: a test suite started in the background by a shell without
    # job control inherits SIGINT ignored, and so would Snakemake (it then ran to the end)
    proc = subprocess.Popen(snakemake_cmd(workdir, target, "--forcerun", "evaluate", *args),
                            cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    _job_script(proc.pid, "evaluate.py")  # running: it waits for the job server's preload
    assert not (workdir / LOGITS).exists()  # Snakemake deleted it when the job started
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: Snakemake and its running job
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    lead = out.split("robustft: the run `snakemake ", 1)[1].split("\n", 1)[0]
    assert f"{target} --forcerun evaluate" in lead.split("` stopped", 1)[0], out[-3000:]
    assert f"1 output(s) it deleted are missing ({LOGITS})" in out
    command = out.split("Restore them with:\n", 1)[1].splitlines()[0].strip()
    assert command.startswith(f"snakemake {LOGITS} --force --snakefile ")

    plain = snakemake(workdir, target, *args, check=False)
    assert "Nothing to be done" in plain.stdout + plain.stderr  # Snakemake's own verdict ...
    assert command in plain.stderr  # ... and the command that restores the logits
    restored = run_suggested(command, Path.home())
    assert restored.returncode == 0, restored.stdout[-2000:] + restored.stderr[-4000:]
    assert (workdir / LOGITS).exists()
    again = snakemake(workdir, target, *args)
    assert "Restore them with" not in again.stdout + again.stderr
