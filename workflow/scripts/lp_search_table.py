import json
from pathlib import Path

from robustft.errors import CorruptFileError, corrupt_message, rebuild_command
from robustft.jobserver import run_job
from robustft.tables import lp_search_table, write


def table():
    timings = []
    for path in snakemake.input:
        try:
            timing = json.loads(Path(path).read_text())
        except ValueError as err:  # a corrupt file: one message naming it and the fix
            raise CorruptFileError(corrupt_message("timing file", path, err)) from None
        if not isinstance(timing.get("lp_search"), dict):
            raise CorruptFileError(
                f"timing file {path} has no lp_search section (written before the linear probe "
                f"recorded its C search); rebuild it with: {rebuild_command(path)}"
            )
        timings.append(timing)
    table = lp_search_table(timings)
    write(table, snakemake.output.csv, snakemake.output.md, digits={"val_top1": 1})
    print(table.to_string(index=False))
    for row in table[table.on_edge].itertuples():
        print(
            f"WARNING: {row.dataset}/{row.backbone}/seed{row.seed}: best C={row.C:.4g} is on the "
            f"{row.edge} edge of the grid [{row.c_min:.4g}, {row.c_max:.4g}]: widen it"
        )


run_job(table, snakemake.log[0])
