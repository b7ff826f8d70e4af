# Experiments: one train and one evaluate job per registered experiment and seed (params: seeds).


rule train:
    input:
        unpack(run_inputs(train_stage)),
    output:
        model=directory("models/{experiment}/seed{seed}"),
        live=directory("reports/live/{experiment}/seed{seed}"),
    params:
        upstream=upstream_flag,
        tensorboard="logs/tensorboard/{experiment}/seed{seed}",
        **stage_params(train_stage),
    log:
        "logs/train/{experiment}/seed{seed}.log",
    benchmark:
        "logs/train/{experiment}/seed{seed}.benchmark.tsv"
    threads: lookup(dpath="{experiment}/threads", within=PARAMS)
    # a run that another starts from (transfer, fine-tuning) trains first: its chain is the longest
    priority: lambda wildcards: int(wildcards.experiment in UPSTREAMS)
    # per-experiment cluster requests (params.yaml): DenseNet-161 and the seed CNN differ 100x
    resources:
        mem_mb=lookup(dpath="{experiment}/mem_mb", within=PARAMS),
        runtime=lookup(dpath="{experiment}/runtime_min", within=PARAMS),
        gpu=lookup(dpath="{experiment}/gpus", within=PARAMS),
        cpus_per_gpu=cpus_per_gpu,
        **CLUSTER,
    shell:
        "imgclf train {wildcards.experiment} --seed {wildcards.seed} --data {input.data} --out {output.model}"
        "{params.upstream} --live {output.live} --tensorboard {params.tensorboard} {params.settings}"
        " --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        unpack(run_inputs(evaluate_stage)),
        model="models/{experiment}/seed{seed}",
    output:
        metrics="reports/metrics/{experiment}/seed{seed}.json",
        details=directory("reports/eval/{experiment}/seed{seed}"),
        confusion="reports/eval/{experiment}/seed{seed}.confusion.csv",
    params:
        **stage_params(evaluate_stage),
    log:
        "logs/evaluate/{experiment}/seed{seed}.log",
    benchmark:
        "logs/evaluate/{experiment}/seed{seed}.benchmark.tsv"
    threads: lookup(dpath="{experiment}/threads", within=PARAMS)
    resources:
        mem_mb=4000,
        runtime=30,
        **CLUSTER,
    shell:
        "imgclf evaluate {wildcards.experiment} --seed {wildcards.seed} --data {input.data} --model {input.model}"
        " --metrics {output.metrics} --out {output.details} --confusion {output.confusion} {params.settings}"
        " --threads {threads} > {log} 2>&1"
