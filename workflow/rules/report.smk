# One rule per workflow target of the experiment registry (cnc/pipeline/experiments.py).


rule report:
    """The default target's tables and figures, from the saved metrics only (into the
    scale's folders, grid.reports_dir and grid.figures_dir)."""
    input:
        target_results("all"),
    output:
        **report_outputs("all"),
    params:
        settings=json.dumps(config, sort_keys=True),
    log:
        f"logs/{SCALE}/report.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} report --params {params.settings:q} --target all"


rule report_choices:
    """Table S1: how far the choices the paper leaves open move the numbers (opt-in)."""
    input:
        target_results("choices"),
    output:
        **report_outputs("choices"),
    params:
        settings=json.dumps(config, sort_keys=True),
    log:
        f"logs/{SCALE}/report_choices.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} report --params {params.settings:q} --target choices"


rule report_benchmarks:
    """The main configuration on every prepared dataset: per-dataset means (opt-in)."""
    input:
        target_results("benchmarks"),
    output:
        **report_outputs("benchmarks"),
    params:
        settings=json.dumps(config, sort_keys=True),
    log:
        f"logs/{SCALE}/report_benchmarks.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} report --params {params.settings:q} --target benchmarks"
