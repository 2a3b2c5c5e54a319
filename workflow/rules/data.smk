rule prepare_data:
    """Generate (synthetic), fetch (mvtec, visa) or check (folder) one dataset."""
    output:
        grid.data_record("{dataset}"),
    params:
        settings=lambda wildcards: json.dumps(dataset_settings(config["data"], wildcards.dataset)),
    log:
        "logs/data/{dataset}.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} data prepare {wildcards.dataset} --settings {params.settings:q} "
        "--record {output}"
