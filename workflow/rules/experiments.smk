# Experiments: one train and one evaluate job per registered experiment.


def train_resources(name):
    """Per-experiment cluster requests from params.yaml: DenseNet-161 and the seed CNN differ 100x."""
    section = PARAMS[name]
    return {
        "mem_mb": section["mem_mb"],
        "runtime": section["runtime_min"],
        "gpu": section["gpus"],
        "cpus_per_gpu": section["threads"] if section["gpus"] else 0,
    }


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
    threads: lambda w: PARAMS[w.experiment]["threads"]
    resources:
        mem_mb=lambda w: train_resources(w.experiment)["mem_mb"],
        runtime=lambda w: train_resources(w.experiment)["runtime"],
        gpu=lambda w: train_resources(w.experiment)["gpu"],
        cpus_per_gpu=lambda w: train_resources(w.experiment)["cpus_per_gpu"],
        **CLUSTER,
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
        values=lambda w: stage_params(f"evaluate_{w.experiment}"),
    log:
        "logs/evaluate/{experiment}.log",
    benchmark:
        "logs/evaluate/{experiment}.benchmark.tsv"
    threads: lambda w: PARAMS[w.experiment]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
        **CLUSTER,
    shell:
        "{params.cmd} --threads {threads} > {log} 2>&1"
