# Per subject (pipeline.qc): registration and lesion QC figures, one new-lesion figure per
# interval.


rule qc_figures:
    input:
        endpoints=deriv(ses=None, suffix="endpoints", ext=".tsv"),
    output:
        registration=report(
            deriv(ses=None, datatype="figures", desc="registration", suffix="qc", ext=".png"),
            caption="../report/registration.rst",
            category="Quality control",
            subcategory="{subject}",
        ),
        lesions=report(
            deriv(ses=None, datatype="figures", desc="lesion", suffix="qc", ext=".png"),
            caption="../report/lesions.rst",
            category="Quality control",
            subcategory="{subject}",
        ),
    params:
        out=lambda wildcards: str(OUT),
        sessions=lambda wc: " ".join(sessions_of(wc)),
        intervals=lambda wc: " ".join(intervals_of(wc)),
    log:
        log("qc"),
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        mem_mb=1500,
    shell:
        "python -m pipeline qc --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} --intervals {params.intervals} > {log} 2>&1"
