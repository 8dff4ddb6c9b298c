# Per session: validated inputs, FLAIR->T1 registration, brain mask, N4 bias correction
# (pipeline.preprocess). Outputs: every file the step writes (pipeline.paths.PRODUCTS); the N4
# images are read by register and segment only, so they are temporary unless keep_intermediates.


rule preprocess:
    input:
        unpack(raw_inputs),
        params=str(PARAMS_JSON),
    output:
        **session_outputs("preprocess"),
    params:
        out=out_dir,
    log:
        log("preprocess", ses="{session}"),
    benchmark:
        bench("preprocess", ses="{session}")
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **job_resources("preprocess"),
    shell:
        "python -m pipeline preprocess --t1w {input.t1w:q} --flair {input.flair:q}"
        " --subject {wildcards.subject} --session {wildcards.session} --out {params.out}"
        " --params {input.params} > {log} 2>&1"
