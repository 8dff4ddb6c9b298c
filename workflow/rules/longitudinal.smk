# Per subject (pipeline.longitudinal): lesions matched across each interval; new T2, enlarging
# T2, new T1-hypointense, T2 lesion volume and its change. Writes per interval the lesion table
# and the new-lesion labels, and the subject's endpoints: one rule per subject layout
# (common.smk, LAYOUTS), each declaring every file.

for layout in LAYOUTS:

    rule:
        name:
            f"longitudinal{layout.suffix}"
        input:
            # every session's lesion masks, normalised images and segmentation QC, and the
            # T1w->subject transforms, which map lesion centroids to native space
            segmented=stands_for("lesion_summary"),
            registered=stands_for("registration_qc"),
            params=str(PARAMS_JSON),
        output:
            **layout_outputs("longitudinal", layout),
        wildcard_constraints:
            subject=layout.subject_pattern,
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
        group:
            step_group("longitudinal")
        threads: 1
        resources:
            **step_resources("longitudinal"),
        shell:
            "python -m pipeline longitudinal --out {params.out} --subject {wildcards.subject}"
            " --sessions {params.sessions} --intervals {params.intervals}"
            " --sessions-months {params.months} --params {input.params}"
            " --sources {params.sources} > {log} 2>&1"
