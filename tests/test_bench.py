"""The ``bench`` harness: warm-up, medians, synchronisation, plan, JSON schema, reports, CLI.

Everything runs on LRASPP at a 64x64 input with untrained weights on tiny clips: the figures
are meaningless, the structure is what is tested.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from media import make_video, probe

import live_seg.model.segmenter as model_module
from live_seg.base.errors import SourceError
from live_seg.cli.main import main
from live_seg.jobs import bench
from live_seg.jobs.bench import SCHEMA, STAGES, Sample, measure, summarize
from live_seg.model.segmenter import Segmenter
from live_seg.pipeline.threads import Control

TINY = {"models": ["lraspp_mobilenet_v3_large"], "size": 64, "weights": "random", "threads": 1}


@pytest.fixture(scope="module", autouse=True)
def _keep_torch_threads():
    """The tiny runs use one torch thread (steady on a busy machine); give the setting back after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("bench") / "clip.mp4", frames=6, width=160, height=96)


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter("lraspp_mobilenet_v3_large", weights="random", device="cpu", size=64, threads=1)


# --- timing core -----------------------------------------------------------------------------


def scripted(seconds: list[float]) -> tuple[list[int], Any]:
    """A fake ``run(n)`` whose k-th call lasts ``seconds[k]``; returns (calls, run)."""
    calls: list[int] = []

    def run(n: int) -> Sample:
        k = len(calls)
        calls.append(n)
        return Sample(seconds[k], n, {"infer": [seconds[k] / n] * n}, [seconds[k]] * n)

    return calls, run


def test_warmup_is_run_first_and_not_counted() -> None:
    calls, run = scripted([100.0, 1.0, 4.0, 2.0])  # the warm-up run is very slow
    r = measure(run, frames=4, warmup=2, repeat=3)
    assert calls == [2, 4, 4, 4]
    assert r["fps_runs"] == [4.0, 1.0, 2.0]
    assert (r["fps"], r["fps_min"], r["fps_max"]) == (2.0, 1.0, 4.0)
    assert r["runs"] == 3 and r["frames"] == [4, 4, 4] and r["warmup"] == 2
    assert r["ms_per_frame"] == 500.0
    assert r["stage_ms"]["infer"] == 500.0  # median of the timed frames only (250, 500, 1000 ms)
    assert r["latency_ms"]["max"] == 4000.0  # the 100 s warm-up left no trace


def test_no_warmup_means_no_extra_run() -> None:
    calls, run = scripted([1.0, 1.0])
    measure(run, frames=3, warmup=0, repeat=2)
    assert calls == [3, 3]


@pytest.mark.parametrize(
    ("frames", "warmup", "repeat"),
    [(0, 1, 1), (1, -1, 1), (1, 1, 0)],
)
def test_measure_rejects_bad_counts(frames: int, warmup: int, repeat: int) -> None:
    with pytest.raises(ValueError, match="frames >= 1"):
        measure(scripted([1.0] * 5)[1], frames, warmup, repeat)


@pytest.mark.parametrize(
    ("samples", "fps", "stage", "p50", "p95"),
    [
        # one run: fps = frames / seconds; even counts take the mean of the middle two
        ([Sample(2.0, 4, {"decode": [0.1, 0.2, 0.3, 0.4]}, [0.1, 0.2, 0.3, 0.4])], 2.0, 250.0, 250.0, 385.0),
        # stages and latencies are pooled over runs before the median
        (
            [Sample(1.0, 2, {"decode": [0.001, 0.003]}, [1.0, 2.0]), Sample(4.0, 2, {"decode": [0.002]}, [3.0])],
            1.25,
            2.0,
            2000.0,
            2900.0,
        ),
    ],
)
def test_summarize_medians_and_percentiles(samples: list[Sample], fps: float, stage: float, p50: float, p95: float):
    r = summarize(samples)
    assert r["fps"] == pytest.approx(fps)
    assert r["stage_ms"]["decode"] == pytest.approx(stage)
    assert r["stage_ms"]["encode"] is None  # a stage the measurement does not have
    assert r["latency_ms"]["p50"] == pytest.approx(p50)
    assert r["latency_ms"]["p95"] == pytest.approx(p95)


def test_summarize_needs_a_run() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summarize([])


class FakeClock:
    def __init__(self, log: list[str]) -> None:
        self.log, self.t = log, 0.0

    def perf_counter(self) -> float:
        self.log.append("clock")
        self.t += 1.0
        return self.t


class FakeSegmenter:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def preprocess(self, frames: list) -> str:
        self.log.append("preprocess")
        return "batch"

    def infer(self, batch: str) -> None:
        self.log.append("infer")

    def synchronize(self) -> None:
        self.log.append("sync")


def test_model_only_synchronizes_before_every_clock_read(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(bench.baselines, "time", FakeClock(log))
    run = bench.model_only_runner(FakeSegmenter(log), [object(), object()])  # type: ignore[arg-type]
    assert log == ["preprocess", "sync"]  # the batch is ready on the device before any timing
    log.clear()
    sample = run(3)  # batch of 2: two passes, 4 frames
    assert sample.frames == 4
    assert log.count("infer") == 2
    for i, entry in enumerate(log):
        if entry == "infer":
            assert log[i + 1] == "sync" and log[i + 2] == "clock"
    assert log[0] == "sync"


# --- plan: what runs, what is not available ---------------------------------------------------


def test_plan_on_a_cpu_only_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: False)  # auto = fp32 on this CPU
    rows = bench.plan(["all"], ["auto", "fp16", "bf16"])
    ok = [(d, p) for d, p, reason in rows if reason is None]
    assert ok == [("cpu", "fp32"), ("cpu", "bf16")]
    missing = {(d, p): reason for d, p, reason in rows if reason is not None}
    assert "fp16 is not supported on cpu" in missing[("cpu", "fp16")]
    assert {d for d, _ in missing} == {"cpu", "cuda", "mps"}
    assert "--device cpu" in missing[("cuda", "auto")]
    assert bench.plan(["auto", "cpu"], ["fp32", "fp32"]) == [("cpu", "fp32", None)]  # duplicates folded


def test_plan_all_precisions_on_a_cuda_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    rows = bench.plan(["cpu", "cuda"], ["all"])
    assert rows == [
        ("cpu", "fp32", None),
        ("cpu", "bf16", None),
        ("cuda", "fp32", None),
        ("cuda", "fp16", None),
        ("cuda", "bf16", None),
    ]
    assert bench.plan(["auto"], ["auto"]) == [("cuda", "fp16", None)]


# --- the three measurements on a real tiny model ---------------------------------------------


def test_naive_run_writes_every_frame(seg: Segmenter, clip: Path, tmp_path: Path) -> None:
    sample = bench.naive_run(seg, clip, 3, tmp_path)
    assert sample.frames == 3 and sample.seconds > 0
    assert {k: len(v) for k, v in sample.stages.items()} == dict.fromkeys(STAGES, 3)
    out = probe(tmp_path / "naive.mp4")["video"]
    assert (out["frames"], out["width"], out["height"]) == (3, 160, 96)


def test_naive_run_stops_when_asked(seg: Segmenter, clip: Path, tmp_path: Path) -> None:
    control = Control()
    control.stop("test")
    with pytest.raises(KeyboardInterrupt):
        bench.naive_run(seg, clip, 3, tmp_path, control)


def test_pipeline_run_limits_frames_and_keeps_latency(seg: Segmenter, clip: Path, tmp_path: Path) -> None:
    sample = bench.pipeline_run(seg, clip, 2, tmp_path)
    assert sample.frames == 2 and len(sample.latency) == 2
    assert {k: len(v) for k, v in sample.stages.items()} == dict.fromkeys(STAGES, 2)
    assert probe(tmp_path / "pipeline.mp4")["video"]["frames"] == 2


def test_read_frames_repeats_the_last_of_a_short_clip(clip: Path) -> None:
    frames = bench.read_frames(clip, 8)
    assert len(frames) == 8 and frames[5] is frames[7]


# --- sources -----------------------------------------------------------------------------------


def test_synthetic_clip(tmp_path: Path) -> None:
    path = bench.make_synthetic_clip(tmp_path / "s.mp4", frames=3, width=160, height=96)
    v = probe(path)["video"]
    assert (v["codec"], v["frames"], v["width"], v["height"]) == ("h264", 3, 160, 96)


def test_synthetic_source_is_720p(tmp_path: Path) -> None:
    path, kind = bench.resolve_source("synthetic", tmp_path, frames=2)
    v = probe(path)["video"]
    assert (kind, v["width"], v["height"], v["frames"]) == ("synthetic", 1280, 720, 2)


def test_without_the_sample_clip_the_bench_runs_on_a_generated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An installed package has no samples/: no --source then means a generated clip, said in the log."""
    monkeypatch.setattr(bench.clips, "SAMPLE_PATHS", (tmp_path / "samples" / "sample.mp4",))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with caplog.at_level("INFO", logger="live_seg.jobs.bench"):
        report = bench.run_bench(["cpu"], ["fp32"], frames=1, warmup=0, repeat=1, **TINY)
    settings = report["settings"]
    assert (settings["source"], settings["source_kind"]) == ("synthetic", "synthetic")
    assert (settings["width"], settings["height"]) == (1280, 720)
    assert [r["status"] for r in report["results"]] == ["ok"]
    assert any("sample.mp4 not found" in r.getMessage() and "synthetic" in r.getMessage() for r in caplog.records)


def test_missing_source_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="--source synthetic") as info:
        bench.resolve_source(str(tmp_path / "nope.mp4"), tmp_path, frames=2)
    assert "\n" not in str(info.value)


# --- the report and its JSON schema ------------------------------------------------------------

MEASURE_KEYS = {
    "fps",
    "fps_min",
    "fps_max",
    "fps_runs",
    "runs",
    "frames",
    "warmup",
    "ms_per_frame",
    "stage_ms",
    "latency_ms",
}
ROW_KEYS = {
    "device",
    "backend",
    "precision",
    "model",
    "batch",
    "status",
    "reason",
    "naive",
    "model_only",
    "pipeline",
    "pipeline_vs_naive",
    "pipeline_vs_model_only",
    "vs_fp32",
    "workers",
    "worker_threads",
}
MACHINE_KEYS = {
    "cpu",
    "cores",
    "load_avg_1m",
    "load_avg_1m_at_start",
    "platform",
    "python",
    "torch",
    "torchvision",
    "torch_threads",
    "cuda",
    "cudnn",
    "cuda_available",
    "gpus",
    "mps_available",
    "openvino",
    "opencv",
    "av",
    "numpy",
}
SETTINGS_KEYS = {
    "source",
    "source_kind",
    "width",
    "height",
    "source_fps",
    "frames",
    "warmup",
    "repeat",
    "batch",
    "size",
    "weights",
    "untrained",
}


def check_schema(report: dict[str, Any]) -> None:
    """The README's schema, key by key and type by type."""
    assert set(report) == {"schema", "date", "command", "elapsed_s", "machine", "settings", "results"}
    assert report["schema"] == SCHEMA
    assert isinstance(report["date"], str) and report["date"].endswith("+00:00")
    assert isinstance(report["elapsed_s"], float)
    assert set(report["machine"]) == MACHINE_KEYS
    assert isinstance(report["machine"]["cores"], int) and isinstance(report["machine"]["gpus"], list)
    assert set(report["settings"]) == SETTINGS_KEYS
    for row in report["results"]:
        assert set(row) == ROW_KEYS
        assert row["status"] in {"ok", "not available", "error"}
        if row["status"] != "ok":
            assert isinstance(row["reason"], str) and row["reason"]
            assert all(row[m] is None for m in bench.MEASURES)
            continue
        assert row["reason"] is None
        for m in bench.MEASURES:
            r = row[m]
            assert set(r) == MEASURE_KEYS
            assert r["fps"] > 0 and r["fps_min"] <= r["fps"] <= r["fps_max"]
            assert len(r["fps_runs"]) == r["runs"] == report["settings"]["repeat"]
            assert set(r["stage_ms"]) == set(STAGES)
        assert all(v is not None for v in row["naive"]["stage_ms"].values())
        assert all(v is not None for v in row["pipeline"]["stage_ms"].values())
        assert row["model_only"]["stage_ms"]["infer"] is not None
        assert set(row["pipeline"]["latency_ms"]) == {"p50", "p95", "max"}
        assert row["naive"]["latency_ms"] is None
        assert row["pipeline_vs_naive"] == pytest.approx(row["pipeline"]["fps"] / row["naive"]["fps"], rel=1e-2)
        assert row["pipeline_vs_model_only"] == pytest.approx(
            row["pipeline"]["fps"] / row["model_only"]["fps"], rel=1e-2
        )
        assert row["workers"] >= 1 and row["worker_threads"] >= 1
        if row["precision"] == "fp32" and row["backend"] == "torch":
            assert row["vs_fp32"] is None
        else:
            assert set(row["vs_fp32"]) == {"logit_rel_err", "mask_agreement", "frames"}
            assert 0 <= row["vs_fp32"]["logit_rel_err"] < 0.05 and row["vs_fp32"]["mask_agreement"] > 0.95


def test_run_bench_report_follows_the_schema(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    report = bench.run_bench(
        ["cpu", "cuda"], ["fp32", "bf16"], source=str(clip), frames=2, warmup=1, repeat=2, command="test",
        backends=["torch", "auto"], **TINY,
    )  # fmt: skip
    check_schema(report)
    assert json.loads(json.dumps(report)) == report  # plain JSON types only
    ok, ok_ov, ok_bf16, ok_ov_bf16, *missing = report["results"]
    assert (ok["device"], ok["backend"], ok["precision"], ok["status"]) == ("cpu", "torch", "fp32", "ok")
    assert (ok_ov["backend"], ok_ov["precision"], ok_ov["status"]) == ("openvino", "fp32", "ok")
    assert ok_ov["vs_fp32"]["mask_agreement"] > 0.999 and ok_ov["workers"] >= 1
    assert (ok_bf16["device"], ok_bf16["precision"], ok_bf16["status"]) == ("cpu", "bf16", "ok")
    assert (ok_ov_bf16["backend"], ok_ov_bf16["precision"]) == ("openvino", "bf16")
    assert [(m["device"], m["status"]) for m in missing] == [("cuda", "not available")] * 2
    assert ok["pipeline"]["frames"] == [2, 2] and ok["naive"]["frames"] == [2, 2]
    assert report["settings"]["width"] == 160 and report["settings"]["untrained"] is True
    table = bench.format_table(report)
    assert "not available" in table and "median of 2 run(s) x 2 frame(s) after 1 warm-up" in table
    md = bench.format_markdown(report)
    assert md.startswith("| device | backend | precision | model | batch | naive fps |") and "- command: `test`" in md


def test_several_batch_sizes_give_a_row_each_with_the_naive_loop_measured_once(clip: Path) -> None:
    report = bench.run_bench(
        ["cpu"], ["fp32"], source=str(clip), frames=2, warmup=0, repeat=1, batch=[1, 2], backends=["torch"], **TINY
    )
    check_schema(report)
    one, two = report["results"]
    assert (one["batch"], two["batch"]) == (1, 2) and report["settings"]["batch"] == [1, 2]
    assert one["naive"] == two["naive"]  # one frame at a time whatever the batch: measured once
    assert one["model_only"]["frames"] == [2] and two["model_only"]["frames"] == [2]
    assert one["status"] == two["status"] == "ok"
    assert "fp32 lraspp_mobilenet_v3_large batch 2" in bench.format_table(report)


def test_a_stop_request_ends_the_run_without_threads(clip: Path) -> None:
    control = Control()
    control.stop("test")
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(["cpu"], ["fp32"], source=str(clip), frames=1, warmup=0, repeat=1, control=control, **TINY)


def fake_report() -> dict[str, Any]:
    """A small hand-made report (no model run) for the plot."""
    r = summarize([Sample(1.0, 2, {"infer": [0.5, 0.5]}, [0.4, 0.6])])
    row = {**bench.result_row("cpu", "fp32", "tiny", "ok"), "naive": r, "model_only": r, "pipeline": r}
    return {
        "date": "2030-01-01T00:00:00+00:00",
        "settings": {"width": 64, "height": 48, "size": 32},
        "results": [row, bench.result_row("mps", "auto", "tiny", "not available", "no mps here")],
    }


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = bench.write_plot(fake_report(), tmp_path / "fps.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- command line --------------------------------------------------------------------------------


def test_cli_bench_prints_and_writes_reports(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    j, md = tmp_path / "b.json", tmp_path / "b.md"
    args = ["bench", "--device", "cpu", "cuda", "--model", "lraspp_mobilenet_v3_large", "--size", "64"]
    args += ["--threads", "1", "--frames", "2", "--warmup", "0", "--repeat", "1", "--source", str(clip)]
    rc = main([*args, "--json", str(j), "--markdown", str(md)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "pipeline/naive" in out.out and "not available" in out.out
    assert "speed does not depend on the weights" in out.err
    report = json.loads(j.read_text())
    check_schema(report)
    assert report["command"].startswith("python run_live.py bench --device cpu cuda --backend auto --precision auto")
    assert "--weights random" in report["command"] and f"--source {clip}" in report["command"]
    auto = model_module.auto_precision("cpu")  # bf16 on a CPU with native bf16, else fp32
    assert f"| cpu | openvino | {auto} | lraspp_mobilenet_v3_large |" in md.read_text()  # auto backend on the CPU


def test_cli_plot_without_matplotlib_fails_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("measured before checking --plot"))
    rc = main(["bench", "--plot", str(tmp_path / "p.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "pip install 'live-seg[plot]'" in err[0]


@pytest.mark.parametrize(
    "args",
    [["--frames", "0"], ["--warmup", "-1"], ["--device", "tpu"], ["--precision", "int4"], ["--model", "nope"]],
)
def test_cli_rejects_bad_arguments(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
