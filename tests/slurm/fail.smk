# Test-only workflow (tests/test_slurm.py), kept out of the product: one job that always fails,
# asking for the memory and time of the smoke config's dataset job (robustft.resources), so that
# SLURM's accounting shows each retry asking for more before the run ends FAILED.
from pathlib import Path

import yaml

from robustft import resources

SMOKE = yaml.safe_load((Path(workflow.basedir).parents[1] / "config" / "smoke.yaml").read_text())


rule fail_on_purpose:
    output:
        "never_written.txt",
    log:
        "logs/fail_on_purpose.log",
    resources:
        mem_mb=lambda wildcards, attempt: resources.dataset_preparation(
            SMOKE["datasets"]["mini"], attempt
        )["mem_mb"],
        runtime=lambda wildcards, attempt: resources.dataset_preparation(
            SMOKE["datasets"]["mini"], attempt
        )["runtime"],
    shell:
        "echo 'failing on purpose in SLURM job '$SLURM_JOB_ID > {log}; exit 3"
