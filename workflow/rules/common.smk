import json

from snakemake.utils import validate

validate(config, "../schemas/params.schema.yaml")


def prepared_data():
    """The record of every dataset that params.yaml asks to prepare."""
    return expand("results/data/{dataset}.json", dataset=config["data"]["prepare"])


def data_settings(dataset):
    """The settings one dataset's preparation depends on, as JSON for the command line."""
    data = config["data"]
    return json.dumps({"downloads": data["downloads"], dataset: data[dataset]}, sort_keys=True)
