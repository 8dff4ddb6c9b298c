# The parameters every step reads (resolved once, validated) and the configuration used
# (pipeline.settings).


rule settings:
    output:
        str(PARAMS_JSON),
    params:
        overrides=lambda wildcards: json.dumps(config["params"], sort_keys=True),
        # the resolved parameters' fingerprint: new defaults in the code rewrite the file
        fingerprint=PARAMS_SHA256,
    log:
        str(LOGS / "settings" / "settings.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline settings --json {params.overrides:q} --out {output} > {log} 2>&1"


rule used_config:
    output:
        str(LOGS / "settings" / "config.json"),
    params:
        config=lambda wildcards: json.dumps(config, sort_keys=True),
    log:
        str(LOGS / "settings" / "used_config.log"),
    conda:
        "../envs/pipeline.yaml"
    shell:
        "python -m pipeline settings --record {params.config:q} --out {output} > {log} 2>&1"
