"""A benchmark report (see :func:`live_seg.jobs.bench.run_bench`) as plain-text tables for the
terminal, as Markdown, and as a bar chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...base.errors import OutputError, one_line
from ...base.metrics import STAGES
from .plan import MEASURES, NOT_AVAILABLE

SUMMARY_HEADER = [
    "device",
    "backend",
    "precision",
    "model",
    "batch",
    "naive fps",
    "model-only fps",
    "pipeline fps",
    "pipeline/naive",
    "pipeline/model-only",
    "p50 ms",
    "p95 ms",
    "vs torch fp32: masks same / logit err",
]
STAGE_HEADER = ["configuration", "measure", "fps", *STAGES]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _config(row: dict[str, Any]) -> str:
    return (
        f"{row['device']} {row.get('backend', 'torch')} {row['precision']} {row['model']} batch {row.get('batch', 1)}"
    )


def _key_cells(r: dict[str, Any]) -> list[str]:
    """The cells that name a row's configuration: device, backend, precision, model, batch."""
    return [r["device"], r.get("backend", "torch"), r["precision"], r["model"], str(r.get("batch", 1))]


def _summary_row(r: dict[str, Any]) -> list[str]:
    if r["status"] != "ok":
        return [*_key_cells(r), r["status"], *[""] * 7]
    lat = r["pipeline"]["latency_ms"] or {}
    vs = r["vs_fp32"]
    vs_text = f"{vs['mask_agreement'] * 100:.2f}% / {vs['logit_rel_err'] * 100:.2f}%" if vs else "-"
    return [
        *_key_cells(r),
        _fmt(r["naive"]["fps"]),
        _fmt(r["model_only"]["fps"]),
        _fmt(r["pipeline"]["fps"]),
        _fmt(r["pipeline_vs_naive"]) + "x",
        _fmt(r["pipeline_vs_model_only"]) + "x",
        _fmt(lat.get("p50"), 0),
        _fmt(lat.get("p95"), 0),
        vs_text,
    ]


def _summary_rows(report: dict[str, Any]) -> list[list[str]]:
    return [_summary_row(r) for r in report["results"]]


def _stage_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            continue
        for m in MEASURES:
            s = r[m]
            rows.append(
                [_config(r), m.replace("_", "-"), _fmt(s["fps"]), *(_fmt(s["stage_ms"].get(k), 1) for k in STAGES)]
            )
    return rows


def _text_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    numeric = [i >= text_columns for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpu = ", ".join(m["gpus"]) if m["gpus"] else "no GPU"
    cuda = f"CUDA {m['cuda']}, cuDNN {m['cudnn']}" if m["cuda_available"] else "CUDA not available"
    return (
        f"{m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads), {gpu}; "
        f"torch {m['torch']}, {cuda}; load {m['load_avg_1m_at_start']} at start"
    )


def _batches(batch: int | list[int]) -> str:
    return ", ".join(map(str, batch)) if isinstance(batch, list) else str(batch)


def _method_line(report: dict[str, Any]) -> str:
    s = report["settings"]
    weights = "untrained (random) weights" if s["untrained"] else f"weights {s['weights']}"
    return (
        f"fps: median of {s['repeat']} run(s) x {s['frames']} frame(s) after {s['warmup']} warm-up frame(s); "
        f"source {s['source']} ({s['width']}x{s['height']}); "
        f"input {_input(s['size'])}, batch {_batches(s['batch'])}; "
        f"{weights}; {report['elapsed_s']:.0f} s in all"
    )


def _reasons(report: dict[str, Any]) -> list[str]:
    seen = dict.fromkeys(f"{r['device']} {r['precision']}: {r['reason']}" for r in report["results"] if r["reason"])
    return list(seen)


def format_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables for the terminal."""
    stage_rows = _stage_rows(report)
    parts = [
        _text_table(SUMMARY_HEADER, _summary_rows(report), text_columns=5),
        "",
        "median ms per frame, by stage:",
        _text_table(STAGE_HEADER, stage_rows, text_columns=2) if stage_rows else "(nothing ran)",
        "",
        _method_line(report),
        "machine: " + _machine_line(report),
    ]
    parts += [f"  {line}" for line in _reasons(report)]
    return "\n".join(parts)


def _md_table(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    """A Markdown table whose first ``text_columns`` columns are left-aligned, the rest right-aligned."""
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i >= text_columns else "---" for i in range(len(header))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: summary table, stage table, method, machine, command and date."""
    stage_header = ["configuration", "measure", "fps", *(f"{k} ms" for k in STAGES)]
    lines = [
        _md_table(SUMMARY_HEADER, _summary_rows(report), text_columns=5),
        "",
        _md_table(stage_header, _stage_rows(report), text_columns=2),
        "",
        f"- {_method_line(report)}",
        f"- machine: {_machine_line(report)}",
        f"- command: `{report['command'] or 'run_bench(...)'}`",
        f"- date: {report['date']}",
    ]
    lines += [f"- {NOT_AVAILABLE} / error: {line}" for line in _reasons(report)]
    return "\n".join(lines) + "\n"


def check_plot_available() -> None:
    """Raise :class:`OutputError` when matplotlib (the ``plot`` extra) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise OutputError("--plot needs matplotlib: pip install 'live-seg[plot]' (or drop --plot)") from exc


def write_plot(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Save a bar chart of fps (naive, model-only, pipeline) per configuration as an image.

    Raises:
        OutputError: matplotlib is missing or the file cannot be written.
    """
    check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [r for r in report["results"] if r["status"] == "ok"]
    labels = [_config(r).replace(" ", "\n", 2) for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(rows) + 2), 4.5), layout="constrained")
    width = 0.27
    for i, m in enumerate(MEASURES):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        values = [r[m]["fps"] for r in rows]
        bars = ax.bar(xs, values, width, label=m.replace("_", "-"))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("frames per second (median)")
    s = report["settings"]
    ax.set_title(
        f"live_seg bench: {s['width']}x{s['height']} source, input {_input(s['size'])}, {report['date'][:10]}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    out = Path(path)
    try:
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise OutputError(f"cannot write the plot {out}: {one_line(exc)}") from exc
    finally:
        plt.close(fig)
    return out


def _input(size: int | None) -> str:
    """The models' input size as a report says it: ``512x512``, or each model's own (``--size`` not given)."""
    return "each model's own" if size is None else f"{size}x{size}"
