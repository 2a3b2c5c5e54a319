rule prepare_data:
    """Generate (synthetic), fetch (mvtec, visa) or check (folder) one dataset."""
    output:
        "results/data/{dataset}.json",
    params:
        settings=lambda wildcards: data_settings(wildcards.dataset),
    log:
        "logs/data/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc data prepare {wildcards.dataset} --settings '{params.settings}' "
        "--record {output} > {log} 2>&1"
