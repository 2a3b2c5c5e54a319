rule report:
    """Every table and figure of the experiment registry, from the saved metrics only
    (into the scale's folders, grid.reports_dir and grid.figures_dir)."""
    input:
        metrics=expand(f"{RUNS}/{{run}}/metrics.json", run=GRID),
        curves=expand(f"{RUNS}/{{run}}/train_log.csv", run=GRID),
    output:
        **report_outputs(),
    params:
        settings=json.dumps(config, sort_keys=True),
    log:
        f"logs/{SCALE}/report.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc report --params {params.settings:q} > {log} 2>&1"
