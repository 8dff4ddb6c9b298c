# What the cohort tables leave out, and why (pipeline.outcome): excluded.tsv.


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
