# Cohort: subject endpoints joined with participants.tsv, then the arm comparison.


rule discovery:
    input:
        participants=str(BIDS / "participants.tsv"),
    output:
        sessions=str(OUT / "discovery" / "sessions.tsv"),
        intervals=str(OUT / "discovery" / "intervals.tsv"),
        notes=str(OUT / "discovery" / "notes.tsv"),
    params:
        bids=lambda wildcards: str(BIDS),
        sessions=" ".join(f"{k}={v:g}" for k, v in SESSIONS_MONTHS.items()),
        intervals=" ".join(INTERVALS),
        subjects=(f"--subjects {' '.join(config['subjects'])}" if config["subjects"] else ""),
        exclude=" ".join(f"--exclude {json.dumps(f'{k}={v}')}"
                         for k, v in config["exclude_subjects"].items()),
        inputs=json.dumps({**INPUT_FILTERS, "multiple_runs": MULTIPLE_RUNS}),
        visit_times=json.dumps(VISIT_TIMES),
    log:
        str(LOGS / "discovery" / "discovery.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline discover --bids {params.bids} --sessions {params.sessions}"
        " --intervals {params.intervals} {params.subjects} {params.exclude}"
        " --inputs {params.inputs:q} --visit-times {params.visit_times:q}"
        " --sessions-out {output.sessions} --intervals-out {output.intervals}"
        " --notes-out {output.notes} > {log} 2>&1"


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


rule stats:
    input:
        endpoints=str(OUT / "endpoints.tsv"),
        participants_json=participants_sidecar(),
        params=str(PARAMS_JSON),
    output:
        stats=report(str(OUT / "group_stats.tsv"), caption="../report/group_stats.rst",
                     category="Group comparison"),
        notes=str(OUT / "group_stats_notes.tsv"),
    params:
        arms=" ".join(ARMS),
        arm_column=ARM_COLUMN,
        sessions=" ".join(f"{k}={v:g}" for k, v in SESSIONS_MONTHS.items()),
        covariates=(f"--covariates {' '.join(config['covariates'])}" if config["covariates"]
                    else ""),
        relapses=(f"--relapse-columns "
                  + " ".join(f"{k}={v:g}" for k, v in config["relapse_columns"].items())
                  if config["relapse_columns"] else ""),
        types=PARTICIPANT_TYPES_ARGS,
    log:
        str(LOGS / "stats" / "stats.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline stats --endpoints {input.endpoints} --arm-column {params.arm_column}"
        " --arms {params.arms} --sessions-months {params.sessions} {params.covariates}"
        " {params.relapses} {params.types} --params {input.params} --out {output.stats}"
        " --notes {output.notes}"
        " > {log} 2>&1"


rule excluded:
    # Every session or subject missing from the cohort tables, and why (pipeline.outcome).
    input:
        sessions=str(OUT / "discovery" / "sessions.tsv"),
        notes=str(OUT / "discovery" / "notes.tsv"),
        refusals=refusal_records(),
    output:
        excluded=str(OUT / "excluded.tsv"),
    log:
        str(LOGS / "excluded" / "excluded.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline excluded --sessions {input.sessions} --notes {input.notes}"
        " --refusals {input.refusals}"
        " --out {output.excluded} > {log} 2>&1"
