# Data: a data set's source (params: data.<dataset>.source, data.sources.<name>) -> download
# (size + MD5 checked; the embedded sample is generated first where it is the source) -> prepared arrays.


rule sample:
    input:
        code=lambda w: stage(f"sample_{ARCHIVE_OF[w.filename]}").code,
    output:
        "data/sample/{filename}",
    params:
        archive=lambda w: ARCHIVE_OF[w.filename],
    log:
        "logs/sample/{filename}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "imgclf make-sample {params.archive} --out {output} > {log} 2>&1"


rule download:
    input:
        sample=lambda w: stage(f"download_{DATASET_OF_RAW[w.raw]}").data,
        code=lambda w: stage(f"download_{DATASET_OF_RAW[w.raw]}").code,
    output:
        "data/raw/{raw}",
    params:
        dataset=lambda w: DATASET_OF_RAW[w.raw],
        settings=lambda w: settings(f"download_{DATASET_OF_RAW[w.raw]}"),
        values=lambda w: stage_params(f"download_{DATASET_OF_RAW[w.raw]}"),
    log:
        "logs/download/{raw}.log",
    threads: 1
    shell:
        "imgclf download {params.dataset} --out {output} {params.settings} > {log} 2>&1"


rule prepare:
    input:
        source=lambda w: stages.prepare_source(w.dataset, PARAMS),
        code=lambda w: stage(f"prepare_{w.dataset}").code,
    output:
        directory("data/prepared/{dataset}"),
    params:
        settings=lambda w: settings(f"prepare_{w.dataset}"),
        values=lambda w: stage_params(f"prepare_{w.dataset}"),
    log:
        "logs/prepare/{dataset}.log",
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
        **CLUSTER,
    shell:
        "imgclf prepare {wildcards.dataset} --source {input.source} --out {output} {params.settings}"
        " --threads {threads} > {log} 2>&1"
