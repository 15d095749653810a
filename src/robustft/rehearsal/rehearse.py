"""Prepare, serve and run a rehearsal in its own directory (default `rehearsal/`):

    python -m robustft.rehearsal                          # config/paper.yaml: `snakemake all`
    python -m robustft.rehearsal flyp_table1 lpft_table1  # some targets only
    python -m robustft.rehearsal --configfile my.yaml     # your paper config (over config.yaml)
    python -m robustft.rehearsal prepare                  # fixtures, checkpoints and overlay only
    python -m robustft.rehearsal serve                    # the loopback server alone (Ctrl-C)

`prepare` writes `<dir>/fixtures/` (`www/`, served; `data/`, the path splits; `manifest.json`)
and the overlay `<dir>/rehearsal.yaml`, once per content (a stamp of the config and this code);
`run` serves `www/` on 127.0.0.1 and runs Snakemake there with `--configfile <your files>
<dir>/rehearsal.yaml`, any further arguments after `--` passed on. The same overlay applies by
hand, with `serve` running: `snakemake --directory rehearsal all --configfile config/paper.yaml
rehearsal/rehearsal.yaml`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository (Snakefile, config/)
PACKAGE = Path(__file__).resolve().parent
OVERLAY = "rehearsal.yaml"
RUN_RECORD = "rehearsal-run.json"  # the last run's command, exit status, wall time and load
FIXTURES = "fixtures"


def read_config(configfiles: list[Path], overlay: dict | None = None) -> dict:
    """config/config.yaml with `configfiles` (and `overlay`) merged in order, checked as a run
    would check it."""
    import copy

    from ..config import check_config
    from ..configfile import merge_into, read_config_file

    config = read_config_file(ROOT / "config" / "config.yaml")
    for path in configfiles:
        merge_into(config, read_config_file(path))
    if overlay:
        merge_into(config, copy.deepcopy(overlay))
    return check_config(
        config, ROOT / "workflow" / "schemas" / "config.schema.yaml", command_line={}
    )


def _stamp(configfiles: list[Path]) -> str:
    """What the fixtures are a function of: the config files, and the package's code and data
    files (the writers, the formats whose layout they follow, the class lists, the models)."""
    digest = hashlib.sha256()
    package = PACKAGE.parent
    code = sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json", ".txt"))
    for path in [*configfiles, ROOT / "config" / "config.yaml", *code]:
        digest.update(
            str(path.relative_to(package) if path.is_relative_to(package) else "").encode()
        )
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def _free_port(preferred: int | None) -> int:
    """`preferred` where it is free (the same URLs as the last run: no refetch), else any."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def build(config: dict, plan) -> tuple:
    """(Files, {name: Dataset}): every fixture file of the config's datasets, not yet written."""
    from .fixtures import Files, config_datasets, share_sizes
    from .writers import label_names, write_dataset

    files = Files()
    datasets = config_datasets(config, plan)
    for ds in datasets.values():
        ds.label_names = label_names(ds)
    share_sizes(datasets)
    for name in sorted(datasets):
        write_dataset(files, datasets[name])
    return files, datasets


def rehearsed_backbones(config: dict, plan) -> list[str]:
    """The backbones the config's runs import from published weights fetched off the network
    (not a file shipped in a package, as the mini stand-ins are)."""
    from ..sources.checkpoints import weights_download
    from ..sources.fetch import local_source

    used = {r.backbone for r in plan.every_run}
    return [b for b in plan.imported if b in used
            and local_source(weights_download(config["backbones"][b])["url"]) is None]  # fmt: skip


def prepare(workdir: Path, configfiles: list[Path], log=print) -> Path:
    """Fixtures, checkpoints and the overlay of `configfiles` under `workdir`; returns the
    overlay's path. Kept as they are where the stamp says nothing changed (only the port)."""
    import yaml

    from ..plan import Plan
    from .checkpoints import checkpoint_bytes, shrink
    from .fixtures import dump, manifest
    from .overlay import overlay

    workdir.mkdir(parents=True, exist_ok=True)
    fixtures = workdir / FIXTURES
    stamp_file, port_file = fixtures / "stamp", fixtures / "port"
    port = _free_port(int(port_file.read_text()) if port_file.is_file() else None)
    stamp = _stamp(configfiles)
    paper = read_config(configfiles)
    archs = {b: k for b in rehearsed_backbones(paper, Plan(paper, root=ROOT))
              if (k := shrink(paper["backbones"][b]["arch"]))}  # fmt: skip
    shrunk = overlay(paper, {}, f"{FIXTURES}/data", archs)
    config = read_config(configfiles, shrunk)  # as the rehearsal runs: its fixtures fit that
    plan = Plan(config, root=ROOT)
    if not (stamp_file.is_file() and stamp_file.read_text() == stamp):
        t0 = time.time()
        import shutil

        shutil.rmtree(fixtures, ignore_errors=True)
        files, datasets = build(config, plan)
        served = files.write(fixtures / "www", workdir)  # path splits: the overlay's paths
        from ..sources.checkpoints import weights_download

        for name in rehearsed_backbones(config, plan):
            spec = config["backbones"][name]
            path = fixtures / "www" / weights_download(spec)["file"]
            if path.name in {p.name for p in served.values() if "checkpoints" in p.parts}:
                continue  # two backbones, one published file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(checkpoint_bytes(spec))
            served[weights_download(spec)["file"]] = path
        (fixtures / "manifest.json").write_text(dump(manifest(served)))
        stamp_file.write_text(stamp)
        log(f"rehearsal fixtures of {len(datasets)} datasets and "
            f"{len(rehearsed_backbones(config, plan))} backbones: "
            f"{len(served)} files in {time.time() - t0:.1f}s")  # fmt: skip
    port_file.write_text(str(port))
    sums = json.loads((fixtures / "manifest.json").read_text())
    urls = {f: {"url": f"http://127.0.0.1:{port}/{f}", "sha256": sums[f]["sha256"]}
            for f in sorted(set(plan.download_files) & set(sums))}  # fmt: skip
    shrunk["mirrors"] = urls
    text = yaml.safe_dump(shrunk, sort_keys=False, width=100)
    head = (
        "# The rehearsal overlay (python -m robustft.rehearsal prepare): laid over "
        f"{', '.join(str(p) for p in configfiles)}.\n"
        "# Fixture data from the loopback server, shrunk backbones, every run shortened; the rest\n"
        "# is the paper config's. Regenerated by each rehearsal; edit the generator, not this.\n"
    )
    (workdir / OVERLAY).write_text(head + text)
    return workdir / OVERLAY


def snakemake_command(workdir: Path, configfiles: list[Path], targets: list[str], cores: int,
                      extra: list[str]) -> list[str]:  # fmt: skip
    snakemake = Path(sys.executable).with_name("snakemake")
    return [str(snakemake), *targets, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--cores", str(cores), "--configfile", *map(str, configfiles),
            str(workdir / OVERLAY), *extra]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from .server import serve

    args = list(sys.argv[1:] if argv is None else argv)
    extra = args[args.index("--") + 1 :] if "--" in args else []
    args = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(prog="python -m robustft.rehearsal",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("targets", nargs="*", help="prepare | serve | targets (default: all)")
    parser.add_argument("--dir", default="rehearsal", help="the rehearsal's directory")
    parser.add_argument("--configfile", action="append", help="default: config/paper.yaml")
    parser.add_argument("--cores", type=int, default=2)
    opts = parser.parse_args(args)
    workdir = Path(opts.dir).resolve()
    configfiles = [Path(f).resolve() for f in (opts.configfile or [ROOT / "config/paper.yaml"])]
    command = opts.targets[0] if opts.targets[:1] in (["prepare"], ["serve"]) else "run"
    targets = opts.targets if command == "run" else []
    if command != "serve":
        overlay = prepare(workdir, configfiles)
        print(f"overlay: {overlay}", flush=True)
        if command == "prepare":
            return 0
    port = int((workdir / FIXTURES / "port").read_text())
    with serve(workdir / FIXTURES / "www", port) as (url, _):
        if command == "serve":
            print(f"serving {workdir / FIXTURES / 'www'} at {url} (Ctrl-C stops)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
        cmd = snakemake_command(workdir, configfiles, targets or ["all"], opts.cores, extra)
        print(" ".join(cmd), flush=True)
        with LoadSampler() as load:
            t0 = time.time()
            rc = subprocess.call(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            wall = time.time() - t0
        record = {"command": cmd, "exit": rc, "started": time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(t0)), "wall_s": round(wall, 1),
            "cores": opts.cores, "cpus": os.cpu_count(), "load": load.summary()}  # fmt: skip
        (workdir / RUN_RECORD).write_text(json.dumps(record, indent=1))
        print(f"rehearsal: snakemake exited {rc} after {wall:.0f}s "
              f"(load {record['load']['mean']:.1f}); {workdir / RUN_RECORD}", flush=True)  # fmt: skip
        return rc


class LoadSampler:
    """The machine's 1-minute load average every `every` seconds while a run lasts (the rehearsal's
    timings are only as good as the machine was quiet)."""

    def __init__(self, every: float = 15.0):
        import threading

        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        values = self.samples or [0.0]
        return {"mean": round(sum(values) / len(values), 2), "max": round(max(values), 2),
                "samples": len(self.samples)}  # fmt: skip
