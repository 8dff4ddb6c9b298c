# The synthetic phantom cohort, generated only when no bids_dir is configured.
if PHANTOM:

    rule phantom:
        output:
            participants=str(BIDS / "participants.tsv"),
            images=[raw(suffix, sub, ses) for sub, sessions in _phantom_layout()
                    for ses in sessions for suffix in ("T1w", "FLAIR")],
            truth=directory(str(TRUTH)),
        params:
            bids=lambda wildcards: str(BIDS),
            preset=config["phantom"]["preset"],
            anatomy=config["phantom"]["anatomy"],
            seed=config["phantom"]["seed"],
            subjects=(f"--subjects {config['phantom']['subjects']}"
                      if config["phantom"]["subjects"] else ""),
        log:
            str(LOGS / "phantom" / "phantom.log"),
        benchmark:
            str(BENCH / "phantom" / "phantom.tsv")
        conda:
            "../envs/pipeline.yaml"
        threads: 1
        resources:
            mem_mb=4000,
        shell:
            "python -m pipeline phantom --preset {params.preset} --anatomy {params.anatomy}"
            " --seed {params.seed}"
            " {params.subjects} --out {params.bids} --truth-dir {output.truth} --preview > {log} 2>&1"

    rule evaluate:
        # Phantom runs only: score the endpoints and the lesion tables against the ground truth.
        input:
            endpoints=str(OUT / "endpoints.tsv"),
            truth=str(TRUTH),
            params=str(PARAMS_JSON),
        output:
            scores=report(str(OUT / "evaluation" / "scores.tsv"),
                          caption="../report/evaluation.rst", category="Accuracy against truth"),
            errors=str(OUT / "evaluation" / "errors.tsv"),
        params:
            out=lambda wildcards: str(OUT),
            bids=lambda wildcards: str(BIDS),
        log:
            str(LOGS / "evaluate" / "evaluate.log"),
        conda:
            "../envs/pipeline.yaml"
        shell:
            "python -m pipeline evaluate --derivatives {params.out} --truth {input.truth}"
            " --bids {params.bids} --params {input.params} --out {output.scores}"
            " --errors {output.errors} > {log} 2>&1"
