# Per subject (pipeline.registration): every session rigidly into one subject space that favours
# no session. Writes each session's T1->subject transform and its subject-space T1w, FLAIR, T1w
# at the FLAIR's resolution and brain mask, the subject template and the registration table:
# one rule per subject layout (common.smk, LAYOUTS), each declaring every file.

for layout in LAYOUTS:

    rule:
        name:
            f"register{layout.suffix}"
        input:
            unpack(register_inputs),  # every session's N4 T1w and FLAIR, brain mask, FLAIR->T1w
            params=str(PARAMS_JSON),
        output:
            **layout_outputs("register", layout),
        wildcard_constraints:
            subject=layout.subject_pattern,
        params:
            out=out_dir,
            sessions=subject_sessions,
            sources=subject_sources,
        log:
            log("register"),
        benchmark:
            bench("register")
        conda:
            "../envs/pipeline.yaml"
        group:
            step_group("register")
        threads: step_threads("register", config["threads_register"])
        resources:
            **step_resources("register"),
        shell:
            "python -m pipeline register --out {params.out} --subject {wildcards.subject}"
            " --sessions {params.sessions} --params {input.params} --threads {threads}"
            " --sources {params.sources} > {log} 2>&1"
