# Per subject (pipeline.registration): every session rigidly into one subject space that favours
# no session. The job also writes each session's T1->subject transform and its subject-space T1w,
# FLAIR and brain mask (one file set per session present, so they are named in the segment rule's
# params).


rule register:
    input:
        t1w=lambda wc: [deriv(wc.subject, s, desc="n4", suffix="T1w") for s in sessions_of(wc)],
        flair=lambda wc: [deriv(wc.subject, s, desc="n4", suffix="FLAIR") for s in sessions_of(wc)],
        mask=lambda wc: [deriv(wc.subject, s, desc="brain", suffix="mask") for s in sessions_of(wc)],
        xfm=lambda wc: [deriv(wc.subject, s, from_="FLAIR", to="T1w", mode="image", suffix="xfm",
                              ext=".txt") for s in sessions_of(wc)],
        params=str(PARAMS_JSON),
    output:
        template=deriv(ses=None, space="subject", desc="template", suffix="T1w"),
        qc=deriv(ses=None, desc="registration", suffix="qc", ext=".tsv"),
    params:
        out=lambda wildcards: str(OUT),
        sessions=lambda wc: " ".join(sessions_of(wc)),
        sources=subject_sources,
    log:
        log("register"),
    benchmark:
        bench("register")
    conda:
        "../envs/pipeline.yaml"
    threads: config["threads_register"]
    resources:
        mem_mb=3000,
    shell:
        "python -m pipeline register --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} --params {input.params} --threads {threads}"
        " --sources {params.sources} > {log} 2>&1"
