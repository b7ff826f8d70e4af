# Experiments: one train and one evaluate job per registered experiment.


def train_resources(name):
    section = PARAMS[name]
    return {"mem_mb": section["mem_mb"], "runtime": section["runtime_min"], "gpu": section["gpus"]}


rule train:
    input:
        lambda w: stage(f"train_{w.experiment}").deps,
    output:
        directory("models/{experiment}"),
    params:
        cmd=lambda w: command(f"train_{w.experiment}"),
        values=lambda w: stage_params(f"train_{w.experiment}"),
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "logs/train/{experiment}.benchmark.tsv"
    threads: 8
    resources:
        mem_mb=lambda w: train_resources(w.experiment)["mem_mb"],
        runtime=lambda w: train_resources(w.experiment)["runtime"],
        gpu=lambda w: train_resources(w.experiment)["gpu"],
    shell:
        "{params.cmd} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        lambda w: stage(f"evaluate_{w.experiment}").deps,
    output:
        metrics="reports/metrics/{experiment}.json",
        details=directory("reports/eval/{experiment}"),
    params:
        cmd=lambda w: command(f"evaluate_{w.experiment}"),
    log:
        "logs/evaluate/{experiment}.log",
    benchmark:
        "logs/evaluate/{experiment}.benchmark.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "{params.cmd} --threads {threads} > {log} 2>&1"
