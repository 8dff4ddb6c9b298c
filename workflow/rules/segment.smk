# Per subject, in subject space (pipeline.segment): T2/FLAIR lesion mask and labels and
# T1-hypointense mask of every session. Each session is segmented on its own, then all sessions
# are refined jointly (a hyperintensity that rose against another session's normal WM is
# lesion). The job reads the sessions' subject-space images (written by register, whose declared
# registration table stands for them) and writes per session desc-lesion mask/dseg, desc-t1hypo
# mask, desc-norm FLAIR/T1w, the lesion table and QC JSON; the declared subject-level summary
# desc-lesion_qc.tsv is written last and stands for them.


rule segment:
    input:
        unpack(segment_inputs),  # native N4 T1w and FLAIR (their voxel sizes), user masks
        registration=deriv(ses=None, desc="registration", suffix="qc", ext=".tsv"),
        params=str(PARAMS_JSON),
    output:
        summary=deriv(ses=None, desc="lesion", suffix="qc", ext=".tsv"),
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
    threads: 1
    resources:
        **job_resources("segment"),
    shell:
        "python -m pipeline segment --out {params.out} --subject {wildcards.subject}"
        " --sessions {params.sessions} {params.user_masks} --params {input.params}"
        " --sources {params.sources} > {log} 2>&1"
