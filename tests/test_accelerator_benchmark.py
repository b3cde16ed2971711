"""benchmarks/accelerator.py at its CPU size: every figure it promises is printed."""

import json

import pytest

from benchmarks import accelerator, input_pipeline

PLAN_FIELDS = {
    "step_seconds",
    "images_per_second",
    "compile_seconds",
    "model_flops_per_step",
    "xla_flops_per_step",
    "mfu",
    "compiled_memory_bytes",
    "host_cores_needed",
}


@pytest.mark.slow
def test_small_run_prints_every_field_for_every_plan_and_dtype(capsys, monkeypatch):
    monkeypatch.setattr(accelerator, "peak_bf16_flops", lambda kind: 1e12)  # CPU has none
    args = ["--small", "--steps", "1", "--repeats", "1"]
    report = accelerator.main([*args, "--pipeline_images", "4"])
    assert json.loads(capsys.readouterr().out) == report
    assert report["device"]["platform"] == "cpu" and report["device"]["peak_bf16_flops"] == 1e12
    for kind in ("sketch", "imagenet"):
        assert report["pipeline"][kind]["images_per_sec_per_core"] > 0
    [result] = report["results"]
    assert result["input_shape"] == [16, 16, 1] and result["batch"] == 8
    for dtype in ("float32", "bfloat16"):
        timings = result[dtype]
        for plan in accelerator.PLANS:
            entry = timings[plan]
            assert set(entry) == PLAN_FIELDS
            assert entry["images_per_second"] == pytest.approx(8 / entry["step_seconds"])
            assert entry["xla_flops_per_step"] > 0 and entry["compiled_memory_bytes"] > 0
            mfu = entry["model_flops_per_step"] / entry["step_seconds"] / 1e12
            assert entry["mfu"] == pytest.approx(mfu)
        ratio = timings["fbin"]["step_seconds"] / timings["float"]["step_seconds"]
        assert timings["fbin_over_float"] == pytest.approx(ratio)
        assert timings["hybrid_over_float"] > 0
    assert set(result["bfloat16_speedup"]) == set(accelerator.PLANS)
    # the model's MACs: 6 x 4.58 M MACs x 8 images per step, whatever the plan
    assert result["float32"]["fbin"]["model_flops_per_step"] == 6 * 4584704 * 8


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("TPU v4", 275e12),
        ("TPU v5 lite", 197e12),
        ("TPU v5p", 459e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("cpu", None),
    ],
)
def test_peak_flops_are_looked_up_by_device_kind(kind, peak):
    assert accelerator.peak_bf16_flops(kind) == peak


def test_no_pipeline_images_skips_the_pipeline_and_its_tensorflow(capsys, monkeypatch):
    """``--pipeline_images 0`` (an accelerator machine without TensorFlow): the host's
    pipeline is not timed, and no plan claims how many host cores it needs."""

    def no_pipeline(*args, **kwargs):
        raise AssertionError("the input pipeline was timed")

    seen = []

    def fake_dtype(config, half, image_shape, batch, steps, repeats, peak, per_core):
        seen.append(per_core)
        return {"step_seconds": 1.0}

    monkeypatch.setattr(input_pipeline, "per_core_rates", no_pipeline)
    monkeypatch.setattr(accelerator, "bench_dtype", fake_dtype)
    monkeypatch.setattr(accelerator, "PLANS", ())
    report = accelerator.main(["--small", "--pipeline_images", "0"])
    capsys.readouterr()
    assert report["pipeline"] == {} and seen == [None, None]  # float32 and bfloat16
