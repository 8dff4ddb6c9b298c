# Per subject (pipeline.longitudinal): lesions matched across each interval; new T2, enlarging
# T2, new T1-hypointense, T2 lesion volume and its change. The job writes, per interval,
# from-<a>_to-<b>_lesions.tsv and the new-lesion labels (space-subject desc-new dseg).


rule longitudinal:
    input:
        # stands for every session's lesion masks, normalised images and segmentation QC
        segmentation=deriv(ses=None, desc="lesion", suffix="qc", ext=".tsv"),
        # stands for the T1w->subject transforms, which map lesion centroids to native space
        registration=deriv(ses=None, desc="registration", suffix="qc", ext=".tsv"),
        params=str(PARAMS_JSON),
    output:
        endpoints=deriv(ses=None, suffix="endpoints", ext=".tsv"),
    params:
        out=out_dir,
        sessions=subject_sessions,
        intervals=subject_intervals,
        months=visit_months,
        sources=subject_sources,
    log:
        log("longitudinal"),
    benchmark:
        bench("longitudinal")
    conda:
        "../envs/pipeline.yaml"
    threads: 1
    resources:
        **job_resources("longitudinal"),
    shell:
        "python -m pipeline longitudinal --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} --intervals {params.intervals}"
        " --sessions-months {params.months} --params {input.params} --sources {params.sources}"
        " > {log} 2>&1"
