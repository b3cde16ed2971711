"""Every file binflax reads or writes goes through etils.epath, so a ``gs://`` workdir works.

The bucket is ``testfs://bucket/...``, a fake one in a temporary directory
(tests/remote_fs.py, the ``bucket`` fixture of conftest.py); a write that bypasses epath
would land in ``./testfs:/`` under the working directory instead, which the fixture
checks stays empty. The whole pipeline (every mode of main.py) runs in that bucket in
tests/test_cli.py::test_hbn_pipeline_in_a_bucket_writes_results_and_resumes.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_a_write_that_bypasses_epath_is_caught(bucket, tmp_path):
    """The fixture's check can fail: plain ``open`` on a URI writes a local folder."""
    from etils import epath

    path = epath.Path("testfs://bucket/x/a.txt")
    path.parent.mkdir(parents=True)
    path.write_text("through epath")
    assert str(path) == "testfs://bucket/x/a.txt"
    assert (pathlib.Path(bucket.root) / "bucket/x/a.txt").read_text() == "through epath"
    local = pathlib.Path("testfs:/bucket/x")  # what os.makedirs(str(path.parent)) creates
    local.mkdir(parents=True)
    assert [p.name for p in (tmp_path / "cwd").iterdir()] == ["testfs:"]
    local.rmdir(), local.parent.rmdir(), local.parent.parent.rmdir()  # leave the check clean


def test_an_export_file_round_trips_through_a_bucket(bucket):
    """``binflax.export`` writes (atomically, leaving no temporary file) and loads a
    ``testfs://`` path, and the loaded integer path computes the model's logits."""
    import numpy as np

    from binflax import export
    from tests.test_export import build

    model, variables = build("mini_sketchanet", "fbin", (16, 16, 1))
    path = "testfs://bucket/exports/mini.npz"
    report = export.export_model(model, variables, path, input_shape=(16, 16, 1))
    written = pathlib.Path(bucket.root) / "bucket/exports"
    assert report["path"] == path and [p.name for p in written.iterdir()] == ["mini.npz"]
    assert report["file_bytes"] == (written / "mini.npz").stat().st_size
    loaded = export.load(path)
    images = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype(np.float32)
    expected = np.asarray(model.apply(variables, images, train=False))
    np.testing.assert_allclose(
        export.integer_forward(loaded, images), expected, rtol=0, atol=1e-5 * abs(expected).max()
    )
    with pytest.raises(export.ExportError, match="no such file"):
        export.load("testfs://bucket/exports/missing.npz")


LOCAL_FILE_CALL = re.compile(r"(?<![.\w])open\(|\bos\.makedirs\(|\bos\.path\.\w+\(|\bos\.fdopen\(")


def test_no_local_only_file_call_without_a_reason():
    """``open(``, ``os.makedirs`` and ``os.path.*`` only where a comment on the line says
    why a local path is right (``# local: ...``)."""
    offenders = []
    for path in sorted((ROOT / "binflax").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            stripped = code.strip()
            if stripped.startswith((">>>", '"""')) or not LOCAL_FILE_CALL.search(code):
                continue
            if "# local:" not in line:
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
