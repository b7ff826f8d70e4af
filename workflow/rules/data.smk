# Data: embedded sample -> download (size + MD5 checked) -> prepared arrays.


rule sample:
    input:
        lambda w: stage(f"sample_{ARCHIVE_OF[w.filename]}").deps,
    output:
        "data/sample/{filename}",
    params:
        cmd=lambda w: command(f"sample_{ARCHIVE_OF[w.filename]}"),
    log:
        "logs/sample/{filename}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.cmd} > {log} 2>&1"


rule download:
    input:
        lambda w: stage(f"download_{ARCHIVE_OF[w.filename]}").deps,
    output:
        "data/raw/{filename}",
    params:
        cmd=lambda w: command(f"download_{ARCHIVE_OF[w.filename]}"),
        values=lambda w: stage_params(f"download_{ARCHIVE_OF[w.filename]}"),
    log:
        "logs/download/{filename}.log",
    threads: 1
    shell:
        "{params.cmd} > {log} 2>&1"


rule prepare:
    input:
        lambda w: stage(f"prepare_{w.dataset}").deps,
    output:
        directory("data/prepared/{dataset}"),
    params:
        cmd=lambda w: command(f"prepare_{w.dataset}"),
        values=lambda w: stage_params(f"prepare_{w.dataset}"),
    log:
        "logs/prepare/{dataset}.log",
    threads: 8
    resources:
        mem_mb=4000,
        runtime=60,
        **CLUSTER,
    shell:
        "{params.cmd} --threads {threads} > {log} 2>&1"
