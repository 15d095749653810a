from robustft.jobs import fetch_file
from robustft.jobserver import run_job

spec = snakemake.params.spec
run_job(fetch_file, snakemake.log[0], spec["url"], snakemake.output[0], spec.get("sha256"),
        spec.get("size"), spec.get("md5"))  # fmt: skip
