# Per subject (pipeline.qc): registration and lesion QC figures, one new-lesion figure per
# interval: one rule per subject layout (common.smk, LAYOUTS), each declaring every figure; the
# registration and lesion figures go into Snakemake's own report too.


for layout in LAYOUTS:

    rule:
        name:
            f"qc_figures{layout.suffix}"
        input:
            # subject-space images and template, lesion masks, new lesions
            measured=stands_for("endpoints"),
        output:
            **qc_outputs(layout),
        wildcard_constraints:
            subject=layout.subject_pattern,
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
        group:
            step_group("qc_figures")
        threads: 1
        resources:
            **step_resources("qc_figures"),
        shell:
            "python -m pipeline qc --out {params.out} --subject {wildcards.subject}"
            " --sessions {params.sessions} --intervals {params.intervals} > {log} 2>&1"
