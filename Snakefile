# The CNC benchmark workflow. Settings: params.yaml (validated against
# workflow/schemas/params.schema.yaml). Logic lives in the `cnc` package; the rules
# only wire its commands together.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        prepared_data(),
        report_outputs().values(),
