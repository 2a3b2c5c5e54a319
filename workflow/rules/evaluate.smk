rule evaluate:
    """The five metrics per class of one run, from its saved maps (CPU, no model)."""
    input:
        f"{RUNS}/{{run}}/maps/protocol.json",
        f"{RUNS}/{{run}}/provenance.json",
    output:
        f"{RUNS}/{{run}}/metrics.json",
        report(
            f"{RUNS}/{{run}}/metrics.csv",
            caption="../report/metrics.rst",
            category="Runs",
            subcategory="metrics",
            labels=run_labels,
        ),
        f"{RUNS}/{{run}}/bootstrap.npz",
        report(
            directory(f"{RUNS}/{{run}}/heatmaps"),
            patterns=["{cls}.png"],
            caption="../report/heatmap.rst",
            category="Heat maps",
            labels=heatmap_labels,
        ),
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
