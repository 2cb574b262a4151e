"""The ``bench`` job: how fast is segmentation on this machine, and where does the time go?

Measuring, running and reporting live apart:

* :mod:`.measure`: one timed run (:class:`Sample`), warm-up and repeats, medians;
* :mod:`.baselines`: the naive loop of the original scripts, the model-only ceiling, the
  ``video`` job timed whole, and the agreement of a faster precision with fp32;
* :mod:`.clips`: the clip measured on (a file, the sample clip, or a generated one);
* :mod:`.machine`: the machine and software the figures come from;
* :mod:`.runner`: the plan of configurations, one row per configuration, the report;
* :mod:`.report`: the report as text tables, Markdown and a bar chart.
"""

from __future__ import annotations

from ...base.metrics import STAGES
from .baselines import (
    agreement,
    decode_segmap,
    model_only_runner,
    naive_infer,
    naive_preprocess,
    naive_run,
    pipeline_run,
)
from .clips import SYNTHETIC, default_source, make_synthetic_clip, read_frames, resolve_source
from .machine import machine_info, runtime_info
from .measure import Sample, Timing, measure, off_main, summarize
from .plan import MEASURES, NOT_AVAILABLE, plan, result_row
from .report import check_plot_available, format_markdown, format_table, write_plot
from .runner import SCHEMA, bench_config, bench_one, run_bench

__all__ = [
    "MEASURES",
    "NOT_AVAILABLE",
    "SCHEMA",
    "STAGES",
    "SYNTHETIC",
    "Sample",
    "Timing",
    "agreement",
    "bench_config",
    "bench_one",
    "check_plot_available",
    "decode_segmap",
    "default_source",
    "format_markdown",
    "format_table",
    "machine_info",
    "make_synthetic_clip",
    "measure",
    "model_only_runner",
    "naive_infer",
    "naive_preprocess",
    "naive_run",
    "off_main",
    "pipeline_run",
    "plan",
    "read_frames",
    "resolve_source",
    "result_row",
    "run_bench",
    "runtime_info",
    "summarize",
    "write_plot",
]
