rule pretrain_backbone:
    input:
        dataset=pretrain_dataset,
    output:
        weights=BACKBONE,
        info="results/backbones/{backbone}.json",
    log:
        "logs/pretrain_backbone/{backbone}.log",
    benchmark:
        "benchmarks/pretrain_backbone/{backbone}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        precision=config["precision"],
        eval_precision=config["eval_precision"],
        spec=backbone_spec,
        scratch=scratch_dir,
    script:
        "../scripts/pretrain_backbone.py"
