rule pretrain_backbone:
    input:
        dataset=pretrain_dataset,
    output:
        weights=BACKBONE,
        info="results/backbones/{backbone}.json",
    params:
        spec=backbone_spec,
        scratch=scratch_dir,
    log:
        "logs/pretrain_backbone/{backbone}.log",
    benchmark:
        "benchmarks/pretrain_backbone/{backbone}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/robustft.yaml"
    script:
        "../scripts/pretrain_backbone.py"
