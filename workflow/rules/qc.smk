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
        out=out_dir,
        sessions=subject_sessions,
        intervals=subject_intervals,
    log:
        log("qc"),
    benchmark:
        bench("qc")
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **job_resources("qc_figures"),
    shell:
        "python -m pipeline qc --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} --intervals {params.intervals} > {log} 2>&1"
