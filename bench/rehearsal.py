"""Where a finished rehearsal's time and memory went, per rule: writes bench/results/rehearsal.
{csv,md}, the table the README shows.

    python bench/rehearsal.py [rehearsal]     # the rehearsal's directory (make rehearse: rehearsal/)

Read from the run itself (bench/snakelog.py: the Snakemake log's jobs and DAG, each job's
benchmark file or log timestamps for its wall time) and from each job's log (`job peak memory`,
written by robustft.jobserver: the job's peak resident memory, or its largest DDP worker's); the
run record (`rehearsal-run.json`) gives the command, wall time and the machine's load meanwhile.
Target rules (one per table or figure) are summed as one row.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from snakelog import cold_run, critical_path  # noqa: E402

PIPELINE_RULES = ("fetch_file", "prepare_dataset", "shard_dataset", "import_backbone", "finetune",
                  "finetune_variant", "select", "evaluate", "evaluate_grid_point",
                  "evaluate_variant", "feature_distortion")  # fmt: skip
PEAK = re.compile(r"^job peak memory: ([\d.]+) MB$", re.MULTILINE)


def peak_mb(workdir: Path, job) -> float | None:
    log = workdir / job.log if job.log else None
    if log and log.is_file() and (found := PEAK.findall(log.read_text(errors="replace"))):
        return float(found[-1])
    return None


def summarise(workdir: Path) -> tuple[list[dict], dict]:
    run = cold_run(workdir)
    jobs = [j for j in run.jobs if j.end is not None and j.rule != "all"]
    rows = defaultdict(lambda: {"jobs": 0, "seconds": 0.0, "max_s": 0.0, "slowest": "",
                                "peak_mb": None})  # fmt: skip
    for job in jobs:
        rule = job.rule if job.rule in PIPELINE_RULES else "targets (one rule per table/figure)"
        row = rows[rule]
        row["jobs"] += 1
        row["seconds"] += job.seconds
        if job.seconds >= row["max_s"]:
            row["max_s"], row["slowest"] = job.seconds, job.label
        peak = peak_mb(workdir, job)
        if peak is not None:
            row["peak_mb"] = max(row["peak_mb"] or 0.0, peak)
    total = sum(r["seconds"] for r in rows.values())
    order = [*PIPELINE_RULES, "targets (one rule per table/figure)"]
    table = []
    for rule in sorted(rows, key=order.index):
        r = rows[rule]
        table.append({"rule": rule, "jobs": r["jobs"], "job_s": round(r["seconds"], 1),
                      "share_%": round(100 * r["seconds"] / total, 1) if total else 0.0,
                      "mean_s": round(r["seconds"] / r["jobs"], 1), "max_s": round(r["max_s"], 1),
                      "slowest": r["slowest"],
                      "peak_mb": round(r["peak_mb"]) if r["peak_mb"] else ""})  # fmt: skip
    record_file = workdir / "rehearsal-run.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    length, path = critical_path(jobs)
    summary = {
        "wall_s": record.get("wall_s") or run.elapsed,
        "jobs": len(jobs),
        "job_s": round(total, 1),
        "cores": record.get("cores", 2),
        "critical_path_s": round(length, 1),
        "critical_path": " > ".join(f"{j.label} {j.seconds:.0f}s" for j in path),
        "load": record.get("load", {}),
        "started": record.get(
            "started", run.started.strftime("%Y-%m-%d %H:%M") if run.started else ""
        ),
        "exit": record.get("exit"),
        "targets_built": targets_built(workdir),
    }
    return table, summary


def targets_built(workdir: Path) -> str:
    """How many catalog targets of the rehearsal's config have every file (from the plan)."""
    overlay = workdir / "rehearsal.yaml"
    record_file = workdir / "rehearsal-run.json"
    if not overlay.is_file() or not record_file.is_file():
        return ""
    sys.path.insert(0, str(ROOT / "src"))
    from robustft.plan import Plan
    from robustft.rehearsal.rehearse import read_config

    command = json.loads(record_file.read_text())["command"]
    files = command[command.index("--configfile") + 1 :]
    files = [Path(f) for f in files[: next((i for i, f in enumerate(files) if f.startswith("-")),
                                           len(files))]]  # fmt: skip
    plan = Plan(read_config(files[:-1], _yaml(overlay)), root=ROOT)
    built = [n for n in plan.all_built if all((workdir / f).is_file()
                                               for f in plan.targets[n].files.values())]  # fmt: skip
    return f"{len(built)} of {len(plan.all_built)}"


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def write(table: list[dict], summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "rehearsal.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    load = summary["load"]
    lines = [
        "| rule | jobs | job time (s) | share | mean (s) | slowest job (s) | peak memory (MB) |",
        "|---|---:|---:|---:|---:|---|---:|",
        *(f"| {r['rule']} | {r['jobs']} | {r['job_s']:.0f} | {r['share_%']:.0f} % | "
          f"{r['mean_s']:.1f} | {r['slowest']} {r['max_s']:.0f} | {r['peak_mb']} |" for r in table),
        "",
        f"{summary['started']}: `make rehearse` ({summary['jobs']} jobs, {summary['targets_built']} "
        f"targets of `all` built, exit {summary['exit']}) took {summary['wall_s'] / 60:.1f} min wall on "
        f"{summary['cores']} cores; the jobs' own times add up to {summary['job_s']:.0f} s "
        f"({summary['job_s'] / summary['cores']:.0f} s per core), the critical path "
        f"{summary['critical_path_s']:.0f} s. Load average meanwhile {load.get('mean', '?')} "
        f"(max {load.get('max', '?')}). Critical path: {summary['critical_path']}.",
    ]  # fmt: skip
    (out / "rehearsal.md").write_text("\n".join(lines) + "\n")
    (out / "rehearsal.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", default=str(ROOT / "rehearsal"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    table, summary = summarise(Path(args.workdir))
    write(table, summary, Path(args.out))
    print((Path(args.out) / "rehearsal.md").read_text())


if __name__ == "__main__":
    main()
