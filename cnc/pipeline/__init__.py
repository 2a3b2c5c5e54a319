"""The workflow around the steps: params.yaml's grid of runs and the experiment registry,
the jobs Snakemake and DVC run, the generated dvc.yaml and the warm-start server."""
