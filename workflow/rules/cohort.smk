# Cohort (pipeline.cohort): subject endpoints joined with participants.tsv, typed by its
# schema.


rule cohort:
    input:
        endpoints=subject_endpoints(),
        participants=str(BIDS / "participants.tsv"),
        participants_json=participants_sidecar(),
    output:
        endpoints=report(str(OUT / "endpoints.tsv"), caption="../report/endpoints.rst",
                         category="Endpoints"),
        description=str(OUT / "dataset_description.json"),
    params:
        arms=" ".join(ARMS),
        arm_column=ARM_COLUMN,
        schema=PARTICIPANT_SCHEMA_ARGS,
    log:
        str(LOGS / "cohort" / "cohort.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline cohort --participants {input.participants} --arm-column {params.arm_column}"
        " --arms {params.arms} {params.schema} --out {output.endpoints}"
        " --dataset-description {output.description} {input.endpoints} > {log} 2>&1"
