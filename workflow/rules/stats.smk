# The arm comparison (pipeline.stats): count, volume and relapse models, adjusted for the
# configured covariates.


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
