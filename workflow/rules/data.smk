# Data: a data set's source (params: data.<dataset>.source, data.sources.<name>) -> download
# (size + MD5 checked; the embedded sample is generated first where it is the source) -> prepared arrays.


rule sample:
    input:
        code=lambda wildcards: stage(f"sample@{SAMPLE_OF[wildcards.filename]}").code,
    output:
        "data/sample/{filename}",
    params:
        sample=lambda wildcards: SAMPLE_OF[wildcards.filename],
    log:
        "logs/sample/{filename}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "imgclf make-sample {params.sample} --out {output} > {log} 2>&1"


rule download:
    input:
        unpack(download_inputs),
    output:
        "data/raw/{raw}",
    params:
        dataset=lambda wildcards: download_stage(wildcards).key,
        **stage_params(download_stage),
    log:
        "logs/download/{raw}.log",
    benchmark:
        "logs/download/{raw}.benchmark.tsv"
    threads: 1
    shell:
        "imgclf download {params.dataset} --out {output} {params.settings} > {log} 2>&1"


rule prepare:
    input:
        unpack(prepare_inputs),
    output:
        directory("data/prepared/{dataset}"),
    params:
        source=lambda wildcards: prepare_stage(wildcards).item["source"],
        **stage_params(prepare_stage),
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/prepare/{dataset}.benchmark.tsv"
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
        **CLUSTER,
    shell:
        "imgclf prepare {wildcards.dataset} --source \"{params.source}\" --out {output} {params.settings}"
        " --threads {threads} > {log} 2>&1"
