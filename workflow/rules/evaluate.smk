rule evaluate:
    """The five metrics per class of every run, from the saved maps (CPU, one process:
    evaluation takes about a second per run, starting a process several)."""
    input:
        expand(f"{RUNS}/{{run}}/maps/protocol.json", run=GRID),
    output:
        expand(f"{RUNS}/{{run}}/metrics.json", run=GRID),
        expand(f"{RUNS}/{{run}}/metrics.csv", run=GRID),
    params:
        runs=expand(f"{RUNS}/{{run}}", run=GRID),
        heatmaps=[f"--heatmaps-for {r}" for r in HEATMAP_RUNS],
    log:
        f"logs/{SCALE}/evaluate.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc evaluate {params.runs} {params.heatmaps} > {log} 2>&1"
