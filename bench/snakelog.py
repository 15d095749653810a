"""What a finished Snakemake run left behind, read back: its jobs, their DAG, their wall times.

Used by bench/suite.py (rows 1 and 7); no Snakemake or torch import, only the files of a run:

* `.snakemake/log/*.snakemake.log`: every job's rule, input, output, log, benchmark, wildcards and
  threads, and the second-resolution timestamps of its start and end. The DAG's edges are rebuilt
  from it: job B depends on job A when one of B's inputs is one of A's outputs.
* `benchmarks/**.tsv` (the rules' `benchmark:` files): a job's wall time `s`, to the 1/100 s.
* what each job says of the time spent inside its function (`function_seconds`): the
  `job function: Xs` line every job run through `robustft.jobserver.run_job` logs; for runs older
  than that line, `job_seconds` of the job's `timing.json` output (fine-tuning), the last line of an
  evaluation or dataset log, the training line of a pretraining log, else a log's last "done in Xs".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?(?:checkpoint|rule) (\S+):$")
_FIELD = re.compile(r"^    (\w+): (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")
_ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    log: str | None = None
    benchmark: str | None = None
    wildcards: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    wall: float | None = None  # benchmark `s` where the rule has a benchmark file
    wall_source: str = "log"  # benchmark | log (1 s resolution)

    @property
    def seconds(self) -> float:
        if self.wall is not None:
            return self.wall
        return (self.end - self.start).total_seconds() if self.end else 0.0

    @property
    def label(self) -> str:
        wc = ",".join(self.wildcards.values())
        return f"{self.rule}({wc})" if wc else self.rule


@dataclass
class Run:
    log_path: Path
    started: datetime | None
    elapsed: float | None  # Snakemake's "Elapsed time" line (None if the run did not finish)
    jobs: list[Job]


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_log(path: str | Path) -> Run:
    """The jobs a Snakemake log records (those that finished have `end`)."""
    path = Path(path)
    jobs: dict[int, Job] = {}
    stamp, started, elapsed = None, None, None
    pending: dict | None = None  # the job being described: fields until its jobid is read
    for line in path.read_text(errors="replace").splitlines():
        if pending is not None and (m := _FIELD.match(line)):
            pending[m.group(1)] = m.group(2)
            continue
        if pending is not None and "jobid" in pending:
            _add(jobs, pending)
        pending = None
        if m := _STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            started = started or stamp
        elif m := _START.match(line):
            pending = {"rule": m.group(1), "start": stamp}
        elif m := _FINISHED.match(line):
            job = jobs.get(int(m.group(1)))
            if job is not None:
                job.end = stamp
        elif m := _ELAPSED.match(line):
            days, h, mnt, s = m.groups()
            elapsed = int(days or 0) * 86400 + int(h) * 3600 + int(mnt) * 60 + float(s)
    if pending is not None and "jobid" in pending:
        _add(jobs, pending)
    return Run(path, started, elapsed, sorted(jobs.values(), key=lambda j: j.start))


def _add(jobs: dict[int, Job], fields: dict) -> None:
    wildcards = dict(kv.split("=", 1) for kv in _split(fields.get("wildcards", "")) if "=" in kv)
    job = Job(
        jobid=int(fields["jobid"]),
        rule=fields["rule"],
        start=fields["start"],
        inputs=_split(fields.get("input", "")),
        outputs=_split(fields.get("output", "")),
        log=fields.get("log"),
        benchmark=fields.get("benchmark"),
        wildcards=wildcards,
        threads=int(fields.get("threads", 1)),
    )
    jobs[job.jobid] = job


def cold_run(workdir: str | Path) -> Run:
    """The run of `workdir` that finished the most jobs (the cold run, not later no-op reruns; the
    latest of equals), with benchmark wall times filled in."""
    logs = sorted((Path(workdir) / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise FileNotFoundError(f"no Snakemake log in {workdir}/.snakemake/log")
    runs = [parse_log(p) for p in logs]
    # ties (two cold runs of the same DAG): the latest, the one whose benchmark files are on disk
    run = max(reversed(runs), key=lambda r: sum(j.end is not None for j in r.jobs))
    for job in run.jobs:
        tsv = Path(workdir) / job.benchmark if job.benchmark else None
        if tsv is not None and tsv.is_file():
            lines = tsv.read_text().splitlines()
            if len(lines) >= 2:
                job.wall = float(lines[1].split("\t")[0])
                job.wall_source = "benchmark"
    return run


def critical_path(jobs: list[Job]) -> tuple[float, list[Job]]:
    """Longest path through the DAG (edges from outputs to inputs), weighted by job seconds."""
    producer = {out: job for job in jobs for out in job.outputs}
    order = sorted(jobs, key=lambda j: j.start)  # a job starts after every job it depends on
    best: dict[int, tuple[float, Job | None]] = {}
    for job in order:
        parents = {producer[i].jobid: producer[i] for i in job.inputs if i in producer}
        prev = max(parents.values(), key=lambda p: best[p.jobid][0], default=None)
        best[job.jobid] = (job.seconds + (best[prev.jobid][0] if prev else 0.0), prev)
    if not best:
        return 0.0, []
    end = max(jobs, key=lambda j: best[j.jobid][0])
    path, node = [], end
    while node is not None:
        path.append(node)
        node = best[node.jobid][1]
    return best[end.jobid][0], path[::-1]


# ---- time spent inside a job's function (what its own files say) -----------------------------
_EVAL = re.compile(r"alpha models x \d+ images in ([\d.]+)s")
_DATASET = re.compile(r"dataset '.*' generated in ([\d.]+)s")
_STEPS = re.compile(r"\d+ steps in ([\d.]+)s")
_DONE = re.compile(r"done in ([\d.]+)s")
_FUNCTION = re.compile(r"^job function: ([\d.]+)s$", re.MULTILINE)  # robustft.jobserver.run_job


def function_seconds(workdir: str | Path, job: Job) -> tuple[float | None, str]:
    """(seconds inside the job's function, where that number comes from), or (None, why not)."""
    workdir = Path(workdir)
    log = workdir / job.log if job.log else None
    text = log.read_text(errors="replace") if log and log.is_file() else ""
    if found := _FUNCTION.findall(text):
        return float(found[-1]), "log: 'job function:' (run_job)"
    for timing in (o for o in job.outputs if o.endswith("timing.json")):  # finetune, pretrain
        path = workdir / timing
        data = json.loads(path.read_text()) if path.is_file() else {}
        if "job_seconds" in data:
            return float(data["job_seconds"]), "timing.json job_seconds"
    pattern = {
        "evaluate": (_EVAL, "log: 'alpha models x images in' (sweep)"),
        "prepare_dataset": (_DATASET, "log: 'generated in'"),
        "pretrain_backbone": (_STEPS, "log: 'steps in' (training loop only)"),
    }
    for prefix, (regex, source) in pattern.items():
        if job.rule.startswith(prefix) and (found := regex.findall(text)):
            return sum(float(x) for x in found), source
    if found := _DONE.findall(text):  # any job whose log ends with "...: done in Xs"
        return float(found[-1]), "log: 'done in'"
    return None, "the job logs no time of its own"
