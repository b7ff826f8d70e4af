# Report: every experiment's metrics beside the paper's figures, plus plots.


rule report:
    input:
        runs=stage("report").deps,  # every run's metrics, DVCLive log and evaluation details
        code=stage("report").code,
    output:
        table=report("reports/results.md", caption="../report/results.rst", category="Results"),
        csv="reports/results.csv",
        figures=report(
            directory("reports/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        **stage_params(lambda wildcards: stage("report")),
    log:
        "logs/report/report.log",
    benchmark:
        "logs/report/report.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
        **CLUSTER,
    shell:
        "imgclf report --metrics-dir reports/metrics --live-dir reports/live --eval-dir reports/eval --out reports"
        " {params.settings} > {log} 2>&1"
