# The self-contained HTML report (pipeline.report): cohort tables by arm, endpoint plots,
# per-subject QC, discovery notes, parameters.


rule report:
    input:
        endpoints=str(OUT / "endpoints.tsv"),
        stats=str(OUT / "group_stats.tsv"),
        notes=str(OUT / "group_stats_notes.tsv"),
        intervals=str(OUT / "discovery" / "intervals.tsv"),
        excluded=str(OUT / "excluded.tsv"),
        discovery_notes=str(OUT / "discovery" / "notes.tsv"),
        config=str(LOGS / "settings" / "config.json"),
        params=str(PARAMS_JSON),
        figures=subject_figures(),
    output:
        html=report(str(OUT / "report.html"), caption="../report/report.rst",
                    category="Report"),
    params:
        out=lambda wildcards: str(OUT),
        arms=" ".join(ARMS),
        arm_column=ARM_COLUMN,
    log:
        str(LOGS / "report" / "report.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline report --out {params.out} --endpoints {input.endpoints}"
        " --group-stats {input.stats} --notes {input.notes} --config-json {input.config}"
        " --skipped {input.intervals} --excluded {input.excluded}"
        " --discovery-notes {input.discovery_notes} --arm-column {params.arm_column} --arms {params.arms}"
        " --params {input.params} --figures {input.figures} --html {output.html} > {log} 2>&1"
