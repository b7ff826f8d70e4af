# Report: every experiment's metrics beside the paper's figures, plus plots.


rule report:
    input:
        stage("report").deps,
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
        cmd=command("report"),
        values=stage_params("report"),
    log:
        "logs/report/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
        **CLUSTER,
    shell:
        "{params.cmd} > {log} 2>&1"
