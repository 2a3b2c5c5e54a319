rule train:
    """Train one run (all classes jointly), then write its test maps in the same process.

    An interrupted run resumes; a finished run of the same settings and code is reused,
    so a changed inference setting re-runs inference only.
    """
    input:
        run_data,
    output:
        maps=f"{RUNS}/{{run}}/maps/protocol.json",
        log=report(
            f"{RUNS}/{{run}}/train_log.csv",
            caption="../report/train_log.rst",
            category="Runs",
            subcategory="training log",
            labels=run_labels,
        ),
        cost=f"{RUNS}/{{run}}/cost.json",
        provenance=f"{RUNS}/{{run}}/provenance.json",
    params:
        run_dir=lambda wildcards: f"{RUNS}/{wildcards.run}",
        settings=run_settings,
    log:
        f"logs/{SCALE}/train/{{run}}.log",
    threads: run_threads
    resources:
        gpu=1,
    conda:
        "../../environment.yml"
    shell:
        "cnc --log {log} train {params.run_dir} --settings {params.settings:q} --resume --force "
        "--no-progress"
