"""analysis: statistics, the protocol's criteria, the GO / NO-GO / INCONCLUSIVE verdict, and the report.

``python -m analysis <sweep_dir>`` reads only what runs leave behind (``runs/*/summary.json`` and
``metrics.jsonl``; ``sweep.json``, ``config.yaml`` and ``manifest.json`` for provenance and sweep-level
gates when present) and writes ``<sweep_dir>/report/``: verdict.json, report.html (self-contained),
report.md, figures/*.png, tables/*.csv. No dataset, GPU or torch is needed.

Modules: ``load`` (read a sweep), ``pairs`` (pair runs by seed and grid point; OOM bounds; CPU memory),
``stats`` (paired t, exact Wilcoxon, bootstrap, Holm), ``metrics`` (the numbers criteria are decided
on), ``criteria`` (outcomes and the verdict),
``tables``/``figures``/``report_html``/``report_md`` (the report), ``build`` (assemble and write it),
``wandb_log`` (optional W&B summary run), ``synthetic`` (planted-effect sweeps for tests and demos).
Criteria and thresholds are in conf/criteria/*.yaml; every other knob in conf/analysis.yaml.
"""
