# Per session, in subject space: T2/FLAIR lesion mask and labels, T1-hypointense mask.
# Segmentation reads every session's subject-space brain mask (written by register, whose
# declared registration table stands for them) and works inside their intersection.


rule segment:
    input:
        registration=deriv(ses=None, desc="registration", suffix="qc", ext=".tsv"),
        user_mask=user_lesion_mask,
        params=str(PARAMS_JSON),
    output:
        mask=deriv(space="subject", desc="lesion", suffix="mask"),
        dseg=deriv(space="subject", desc="lesion", suffix="dseg"),
        t1hypo=deriv(space="subject", desc="t1hypo", suffix="mask"),
        flair=deriv(space="subject", desc="norm", suffix="FLAIR"),
        t1w=deriv(space="subject", desc="norm", suffix="T1w"),
        table=deriv(space="subject", desc="lesion", suffix="lesions", ext=".tsv"),
        qc=deriv(space="subject", desc="lesion", suffix="qc", ext=".json"),
    params:
        out=lambda wildcards: str(OUT),
        user_mask=lambda wc, input: f"--lesion-mask {input.user_mask}" if input.user_mask else "",
    log:
        log("segment", ses="{session}"),
    benchmark:
        bench("segment", ses="{session}")
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m pipeline segment --out {params.out} --subject {wildcards.subject}"
        " --session {wildcards.session} {params.user_mask} --params {input.params} > {log} 2>&1"
