# Every table and figure of the five papers (config `catalog`): `snakemake <target name>` builds one
# from the runs it names (and only those), writing results/papers/<paper>/<item>.*.


wildcard_constraints:
    paper=_choices({spec["paper"] for spec in CATALOG.values()} or ["-"]),
    item=_choices({spec["item"] for spec in CATALOG.values()} or ["-"]),
    target=_choices(CATALOG or ["-"]),


rule paper_table:
    input:
        unpack(target_inputs),
    output:
        csv=report(
            "results/papers/{paper}/{item}.csv",
            caption="../report/paper_target.rst",
            category="Papers",
            subcategory="{paper}",
        ),
        md="results/papers/{paper}/{item}.md",
        compare="results/papers/{paper}/{item}.compare.csv",
    log:
        "logs/papers/{paper}/{item}.log",
    benchmark:
        "benchmarks/papers/{paper}/{item}.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        spec=lambda wildcards: CATALOG[target_name(wildcards)],
        groups=target_groups,
        order=method_order(),
        published=published_numbers,
        code=job_code("paper_table.py"),
    script:
        "../scripts/paper_table.py"


rule paper_figure:
    input:
        unpack(target_inputs),
    output:
        pdf="results/papers/{paper}/{item}.pdf",
        png=report(
            "results/papers/{paper}/{item}.png",
            caption="../report/paper_target.rst",
            category="Papers",
            subcategory="{paper}",
        ),
    log:
        "logs/papers/{paper}/{item}.log",
    benchmark:
        "benchmarks/papers/{paper}/{item}.tsv"
    localrule: True
    conda:
        "../../envs/robustft.yaml"
    params:
        spec=lambda wildcards: CATALOG[target_name(wildcards)],
        groups=target_groups,
        recipes=target_recipes,
        settings=lambda wildcards: {
            **figure_settings("papers"),
            **CATALOG[target_name(wildcards)].get("plot", {}),
        },
        code=job_code("paper_figure.py"),
    script:
        "../scripts/paper_figure.py"


ruleorder: paper_table > paper_figure


# LP-FT's feature distortion: features of the pretrained and each fine-tuned encoder, ID and OOD.
rule feature_distortion:
    input:
        unpack(distortion_inputs),
    output:
        DISTORTION,
    log:
        "logs/feature_distortion/{target}.log",
    benchmark:
        "benchmarks/feature_distortion/{target}.tsv"
    conda:
        "../../envs/robustft.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        backbone=lambda wildcards: CATALOG[wildcards.target]["backbone"],
        spec=lambda wildcards: backbone_spec(
            Wildcards(backbone=CATALOG[wildcards.target]["backbone"])
        ),
        precision=config["eval_precision"],
        dataset=lambda wildcards: dataset_version(CATALOG[wildcards.target]["dataset"]),
        code=job_code("feature_distortion.py"),
    script:
        "../scripts/feature_distortion.py"


# One rule per target, named as in the catalog: `snakemake flyp_table1`.
for _name in CATALOG:

    rule:
        name:
            _name
        input:
            target_files(_name),
        localrule: True
