# Per session: validated inputs, FLAIR->T1 registration, brain mask, N4 bias correction
# (pipeline.preprocess).


rule preprocess:
    input:
        unpack(raw_inputs),
        params=str(PARAMS_JSON),
    output:
        # read by register and segment only (keep_intermediates keeps them)
        t1w=intermediate(deriv(desc="n4", suffix="T1w")),
        flair=intermediate(deriv(desc="n4", suffix="FLAIR")),
        mask=deriv(desc="brain", suffix="mask"),
        xfm=deriv(from_="FLAIR", to="T1w", mode="image", suffix="xfm", ext=".txt"),
        qc=deriv(desc="preproc", suffix="qc", ext=".json"),
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
