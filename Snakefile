# The CNC benchmark workflow. Settings: params.yaml (validated against
# cnc/schema.yaml). Logic lives in the `cnc` package; the rules
# only wire its commands together.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# `snakemake [target] --report report.html`: a front page (written by a report job), the
# outputs flagged with report() in the rules, the graph and the runtime statistics.
report: front_page()


# On a cluster these run where snakemake runs: downloads need the network that compute
# nodes often lack, and the report takes seconds.
localrules:
    all,
    choices,
    benchmarks,
    prepare_data,
    report,
    report_choices,
    report_benchmarks,


rule all:
    default_target: True
    input:
        prepared_data(),
        report_outputs("all").values(),


# Opt-in: the main configuration once per choice the paper leaves open (Table S1).
rule choices:
    input:
        prepared_data(),
        report_outputs("choices").values(),


# Opt-in: the main configuration on every prepared dataset (MVTec AD 2, MPDD, BTAD, ...).
rule benchmarks:
    input:
        prepared_data(),
        report_outputs("benchmarks").values(),
