# Per subject, in subject space (pipeline.segment): T2/FLAIR lesion mask and labels and
# T1-hypointense mask of every session. Each session is segmented on its own, then all sessions
# are refined jointly (a hyperintensity that rose against another session's normal WM is
# lesion). Writes per session the lesion mask and labels, black-hole mask, normalised FLAIR and
# T1w, lesion table and QC JSON, and the subject's segmentation summary: one rule per subject
# layout (common.smk, LAYOUTS), each declaring every file.

for layout in LAYOUTS:

    rule:
        name:
            f"segment{layout.suffix}"
        input:
            unpack(segment_inputs),  # native N4 T1w and FLAIR (their voxel sizes), user masks
            registered=stands_for("registration_qc"),
            params=str(PARAMS_JSON),
        output:
            **layout_outputs("segment", layout),
        wildcard_constraints:
            subject=layout.subject_pattern,
        params:
            out=out_dir,
            sessions=subject_sessions,
            user_masks=user_mask_args,
            sources=subject_sources,
        log:
            log("segment"),
        benchmark:
            bench("segment")
        conda:
            "../envs/pipeline.yaml"
        group:
            step_group("segment")
        threads: 1
        resources:
            **step_resources("segment"),
        shell:
            "python -m pipeline segment --out {params.out} --subject {wildcards.subject}"
            " --sessions {params.sessions} {params.user_masks} --params {input.params}"
            " --sources {params.sources} > {log} 2>&1"
