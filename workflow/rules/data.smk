# Data: a data set's source (params: data.<dataset>.source, data.sources.<name>) -> download
# (size + MD5 checked; the embedded sample is generated first where it is the source) -> prepared arrays.


rule sample:
    input:
        code=lambda w: stage(f"sample@{SAMPLE_OF[w.filename]}").code,
    output:
        "data/sample/{filename}",
    params:
        sample=lambda w: SAMPLE_OF[w.filename],
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
        sample=lambda w: DOWNLOAD_OF[w.raw].deps,
        code=lambda w: DOWNLOAD_OF[w.raw].code,
    output:
        "data/raw/{raw}",
    params:
        dataset=lambda w: DOWNLOAD_OF[w.raw].key,
        settings=lambda w: settings(DOWNLOAD_OF[w.raw]),
        values=lambda w: values(DOWNLOAD_OF[w.raw]),
    log:
        "logs/download/{raw}.log",
    benchmark:
        "logs/download/{raw}.benchmark.tsv"
    threads: 1
    shell:
        "imgclf download {params.dataset} --out {output} {params.settings} > {log} 2>&1"


rule prepare:
    input:
        source=lambda w: LISTINGS.get(w.dataset) or PREPARE_OF[w.dataset].deps,  # a folder's listing, or the archive
        code=lambda w: PREPARE_OF[w.dataset].code,
    output:
        directory("data/prepared/{dataset}"),
    params:
        source=lambda w: PREPARE_OF[w.dataset].item["source"],
        settings=lambda w: settings(PREPARE_OF[w.dataset]),
        values=lambda w: values(PREPARE_OF[w.dataset]),
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
