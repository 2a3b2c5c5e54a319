rule report:
    """Tables 1-4 (Markdown, LaTeX, CSV) and the figures, from the saved metrics only."""
    input:
        metrics=expand(f"{RUNS}/{{run}}/metrics.json", run=GRID),
        curves=expand(f"{RUNS}/{{run}}/train_log.csv", run=GRID),
    output:
        **report_outputs(),
    params:
        settings=report_settings(),
        runs=lambda wildcards, input: parent(input.metrics[0], 2),
        reports=lambda wildcards, output: parent(output.table1),
        figures=lambda wildcards, output: parent(output.fig4),
    log:
        f"logs/{SCALE}/report.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc report --settings {params.settings} --runs {params.runs} "
        "--reports {params.reports} --figures {params.figures} > {log} 2>&1"
