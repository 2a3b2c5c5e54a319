rule evaluate:
    """The five metrics per class of one run, from its saved maps (CPU, no model)."""
    input:
        f"{RUNS}/{{run}}/maps/protocol.json",
        f"{RUNS}/{{run}}/provenance.json",
    output:
        f"{RUNS}/{{run}}/metrics.json",
        f"{RUNS}/{{run}}/metrics.csv",
        f"{RUNS}/{{run}}/bootstrap.npz",
    params:
        run_dir=lambda wildcards: f"{RUNS}/{wildcards.run}",
        settings=evaluate_settings,
        heatmaps=lambda wildcards: "--heatmaps" if wildcards.run in HEATMAP_RUNS else "--no-heatmaps",
    log:
        f"logs/{SCALE}/evaluate/{{run}}.log",
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} evaluate {params.run_dir} --settings {params.settings:q} "
        "{params.heatmaps}"
