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
    script:
        "../scripts/finetune.py"
