# Experiments: one train and one evaluate job per registered experiment and seed (params: seeds).


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
        data=lambda w: run_stage("train", w).deps[0],
        upstream=lambda w: run_stage("train", w).item.get("upstream", []),
        code=lambda w: run_stage("train", w).code,
    output:
        model=directory("models/{experiment}/seed{seed}"),
        live=directory("reports/live/{experiment}/seed{seed}"),
    params:
        upstream=upstream_flag,
        tensorboard="logs/tensorboard/{experiment}/seed{seed}",
        settings=lambda w: settings(run_stage("train", w)),
        values=lambda w: values(run_stage("train", w)),
    log:
        "logs/train/{experiment}/seed{seed}.log",
    benchmark:
        "logs/train/{experiment}/seed{seed}.benchmark.tsv"
    threads: lambda w: PARAMS[w.experiment]["threads"]
    # a run that another starts from (transfer, fine-tuning) trains first: its chain is the longest
    priority: lambda w: int(w.experiment in UPSTREAMS)
    resources:
        mem_mb=lambda w: train_resources(w.experiment)["mem_mb"],
        runtime=lambda w: train_resources(w.experiment)["runtime"],
        gpu=lambda w: train_resources(w.experiment)["gpu"],
        cpus_per_gpu=lambda w: train_resources(w.experiment)["cpus_per_gpu"],
        **CLUSTER,
    shell:
        "imgclf train {wildcards.experiment} --seed {wildcards.seed} --data {input.data} --out {output.model}"
        "{params.upstream} --live {output.live} --tensorboard {params.tensorboard} {params.settings}"
        " --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        model="models/{experiment}/seed{seed}",
        data=lambda w: run_stage("evaluate", w).deps[1],
        code=lambda w: run_stage("evaluate", w).code,
    output:
        metrics="reports/metrics/{experiment}/seed{seed}.json",
        details=directory("reports/eval/{experiment}/seed{seed}"),
        confusion="reports/eval/{experiment}/seed{seed}.confusion.csv",
    params:
        settings=lambda w: settings(run_stage("evaluate", w)),
        values=lambda w: values(run_stage("evaluate", w)),
    log:
        "logs/evaluate/{experiment}/seed{seed}.log",
    benchmark:
        "logs/evaluate/{experiment}/seed{seed}.benchmark.tsv"
    threads: lambda w: PARAMS[w.experiment]["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
        **CLUSTER,
    shell:
        "imgclf evaluate {wildcards.experiment} --seed {wildcards.seed} --data {input.data} --model {input.model}"
        " --metrics {output.metrics} --out {output.details} --confusion {output.confusion} {params.settings}"
        " --threads {threads} > {log} 2>&1"
