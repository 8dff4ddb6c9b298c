# Per subject (pipeline.registration): every session rigidly into one subject space that favours
# no session. The job also writes each session's T1->subject transform and its subject-space T1w,
# FLAIR and brain mask (one file set per session present, so they are named in the segment rule's
# params).


rule register:
    input:
        unpack(register_inputs),  # every session's N4 T1w and FLAIR, brain mask, FLAIR->T1w
        params=str(PARAMS_JSON),
    output:
        template=deriv(ses=None, space="subject", desc="template", suffix="T1w"),
        qc=deriv(ses=None, desc="registration", suffix="qc", ext=".tsv"),
    params:
        out=out_dir,
        sessions=subject_sessions,
        sources=subject_sources,
    log:
        log("register"),
    benchmark:
        bench("register")
    conda:
        "../envs/pipeline.yaml"
    threads: config["threads_register"]
    resources:
        **job_resources("register"),
    shell:
        "python -m pipeline register --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} --params {input.params} --threads {threads}"
        " --sources {params.sources} > {log} 2>&1"
