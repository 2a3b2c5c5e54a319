rule report:
    """Tables 1-4 (Markdown, LaTeX, CSV) and the figures, from the saved metrics only."""
    input:
        metrics=expand(f"{RUNS}/{{run}}/metrics.json", run=GRID),
        curves=expand(f"{RUNS}/{{run}}/train_log.csv", run=GRID),
    output:
        report_outputs(),
    params:
        settings=report_settings(),
    log:
        f"logs/{SCALE}/report.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc report --settings {params.settings} --runs {RUNS} --reports {REPORTS} "
        "--figures {FIGURES} > {log} 2>&1"
