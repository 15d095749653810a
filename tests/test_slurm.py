"""The workflow on a real SLURM cluster: tests/slurm_cluster.sh brings up one node (slurmctld,
slurmd, slurmdbd for `sacct`, two fake GPUs on partition `gpu`), the smoke config runs through
`snakemake --profile profiles/slurm`, and a job that always fails is retried with more memory and
then ends the run FAILED. The cluster goes down in every case; conftest.py runs this module last.
Needs root (apt-get, daemons); skipped otherwise, or where apt-get cannot install SLURM."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.test_workflow import BIN, ENV, ROOT, SMOKE

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "tests" / "slurm_cluster.sh"
SUBSET = ROOT / "tests" / "slurm" / "smoke_subset.yaml"
FAILING = ROOT / "tests" / "slurm" / "fail.smk"
PROFILE = ROOT / "profiles" / "slurm"
LIMIT_S = 900  # then SIGINT: snakemake scancels its jobs (SIGTERM would wait for them)
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test installs and starts SLURM's daemons: run the suite as root")
    install = subprocess.run(["bash", str(CLUSTER), "install"], capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"apt-get could not install SLURM (slurm-wlm, munge, slurmdbd, mariadb-server): "
                    f"{install.stderr.strip()[-600:]}")  # fmt: skip
    try:
        up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True,
                            env={**os.environ, "SLURM_CI_INSTALL": "0"})  # fmt: skip
        assert up.returncode == 0, f"the SLURM cluster did not come up:\n{up.stderr[-3000:]}"
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, text=True)


def start_snakemake(workdir: Path, snakefile: Path, *args: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = ["timeout", "-s", "INT", "-k", "30", str(LIMIT_S),
           str(BIN / "snakemake"), "--snakefile", str(snakefile), "--directory", str(workdir),
           "--profile", str(PROFILE),
           # poll SLURM every second, not after 40 s and then every 10-180 s
           "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
           *args]  # fmt: skip
    return subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The smoke subset up to one figure, and the failing workflow, side by side on the cluster."""
    root = tmp_path_factory.mktemp("slurm")
    t0 = time.time()
    smoke = start_snakemake(root / "smoke", ROOT / "Snakefile",
                            "--configfile", str(SMOKE), str(SUBSET), "--", "wiseft_figure")  # fmt: skip
    failing = start_snakemake(root / "fail", FAILING)
    out = {}
    for name, proc in (("fail", failing), ("smoke", smoke)):  # the failing run ends first
        log, _ = proc.communicate()
        out[name] = dict(rc=proc.returncode, log=log, workdir=root / name,
                         submitted=SUBMITTED.findall(log), seconds=time.time() - t0)  # fmt: skip
    print(f"\nSLURM runs: failing job {out['fail']['seconds']:.0f} s, "
          f"smoke subset {out['smoke']['seconds']:.0f} s")  # fmt: skip
    return out


def sacct(job_ids: list[str], fields: str) -> list[dict[str, str]]:
    """One row per job (allocations, not steps), waiting for slurmdbd to record their end."""
    names = fields.split(",")
    for _ in range(60):
        lines = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State," + fields],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()  # fmt: skip
        rows = [
            dict(zip(["JobID", "State", *names], line.split("|"), strict=True)) for line in lines
        ]
        if len(rows) == len(job_ids) and not any(
            r["State"] in ("PENDING", "RUNNING", "COMPLETING") for r in rows
        ):
            return rows
        time.sleep(1)
    raise AssertionError(f"sacct did not record the end of jobs {job_ids}: {lines}")


def rule_of(slurm_log: str) -> str:
    """`rule_<rule>` or `group_<group>`: the plugin logs to .snakemake/slurm_logs/rule_<rule>/...,
    or group_<group>_<its rules>/..."""
    name = re.search(r"slurm_logs/(\w+)/", slurm_log).group(1)
    return re.sub(r"^(group_evaluations)_.*", r"\1", name)


def smoke_submissions(runs) -> dict[str, list[str]]:
    run = runs["smoke"]
    assert run["rc"] == 0, f"the SLURM smoke run failed:\n{run['log'][-6000:]}"
    by_rule: dict[str, list[str]] = {}
    for _, slurm_id, slurm_log in run["submitted"]:
        by_rule.setdefault(rule_of(slurm_log), []).append(slurm_id)
    return by_rule


def test_smoke_subset_runs_every_cluster_job_under_slurm_and_tables_locally(runs):
    by_rule = smoke_submissions(runs)
    workdir = runs["smoke"]["workdir"]
    # (the figure scores the logits itself: no table or metrics file on the way)
    for path in ("results/smoke/figures/wiseft_curve.png",
                 "results/logits/mini/mini-clip/ft/seed0.npz",
                 "results/logits/mini/mini-clip/zeroshot/seed0.npz"):  # fmt: skip
        assert (workdir / path).is_file(), path
    # two evaluations in one SLURM job (the profile's group); metrics, table and figure: local
    assert {rule: len(ids) for rule, ids in by_rule.items()} == {
        "rule_prepare_dataset": 1, "rule_pretrain_backbone": 1, "rule_finetune": 2,
        "group_evaluations": 1,
    }  # fmt: skip
    for _, slurm_id, slurm_log in runs["smoke"]["submitted"]:
        log = Path(slurm_log)
        assert log.name == f"{slurm_id}.log" and log.is_file(), slurm_log
        assert "Finished jobid" in log.read_text(), slurm_log  # Snakemake's, inside the job
    ids = [i for _, i, _ in runs["smoke"]["submitted"]]
    assert {r["State"] for r in sacct(ids, "JobName")} == {"COMPLETED"}
    assert (workdir / "logs/smoke/wiseft_figure.log").is_file()  # the local job's own log
    assert not any("metrics" in log or "figure" in log for _, _, log in runs["smoke"]["submitted"])


def test_training_and_evaluation_run_with_gpus_on_the_gpu_partition(runs):
    by_rule = smoke_submissions(runs)
    rows = {r["JobID"]: r for r in sacct(sum(by_rule.values(), []), "Partition,AllocTRES")}
    for slurm_id in by_rule["rule_finetune"] + by_rule["rule_pretrain_backbone"]:
        assert rows[slurm_id]["Partition"] == "gpu", rows[slurm_id]
        assert "gres/gpu=1" in rows[slurm_id]["AllocTRES"], rows[slurm_id]
    (group,) = by_rule["group_evaluations"]  # its two evaluations side by side: two GPUs
    assert rows[group]["Partition"] == "gpu" and "gres/gpu=2" in rows[group]["AllocTRES"]
    (prepare,) = by_rule["rule_prepare_dataset"]
    assert rows[prepare]["Partition"] == "main" and "gpu" not in rows[prepare]["AllocTRES"]


def test_a_failing_job_is_retried_with_more_memory_then_fails_the_run(runs):
    run = runs["fail"]
    assert run["rc"] != 0 and run["rc"] not in (124, 137), run["log"][-4000:]
    ids = [slurm_id for _, slurm_id, _ in run["submitted"]]
    assert len(ids) == 3, run["log"][-4000:]  # the profile's retries: 2
    rows = sacct(ids, "ReqMem,Timelimit")
    assert [r["State"] for r in rows] == ["FAILED"] * 3, rows
    memory = [int(re.match(r"(\d+)M", r["ReqMem"]).group(1)) for r in rows]
    assert memory[1] >= 2 * memory[0] - 1 and memory[2] >= 2 * memory[1] - 1, rows
    minutes = [int(r["Timelimit"].split(":")[-2]) + 60 * int(r["Timelimit"].split(":")[-3])
               for r in rows]  # fmt: skip
    assert minutes[1] == 2 * minutes[0] and minutes[2] == 4 * minutes[0], rows
    assert "FAILED" in run["log"]
    assert Counter(rule_of(log) for _, _, log in run["submitted"]) == {"rule_fail_on_purpose": 3}
