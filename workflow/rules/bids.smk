# Discovery: subjects, sessions (their chosen files and visit times), runnable intervals and
# notes on what was skipped (pipeline.bids); no image is opened.


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
