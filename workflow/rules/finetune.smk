rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model=MODEL,
    log:
        "logs/finetune/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        precision=config["precision"],
        spec=backbone_spec,
        hparams=method_hparams,
        scratch=scratch_dir,
        variant="main",
        hold_out=None,
    script:
        "../scripts/finetune.py"


# Calibration's extra fine-tunes of a run: `oracle` trains on every class, `pcv<k>` hides a seeded
# share of the fine-tuning classes (gamma_PCV's pseudo cross-validation).
use rule finetune as finetune_variant with:
    output:
        model=VARIANT_MODEL,
    log:
        "logs/finetune/{dataset}/{backbone}/{method}/seed{seed}-{variant}.log",
    benchmark:
        "benchmarks/finetune/{dataset}/{backbone}/{method}/seed{seed}-{variant}.tsv"
    params:
        precision=config["precision"],
        spec=backbone_spec,
        hparams=method_hparams,
        scratch=scratch_dir,
        variant=lambda wildcards: wildcards.variant,
        hold_out=config["calibration"]["pcv"]["hold_out"],
