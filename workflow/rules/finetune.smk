rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        model=MODEL,
    params:
        spec=backbone_spec,
        hparams=method_hparams,
        scratch=scratch_dir,
    log:
        "logs/finetune/{dataset}/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{dataset}/{backbone}/{method}/seed{seed}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/robustft.yaml"
    script:
        "../scripts/finetune.py"
