"""The export of a network of your own (``binflax.binarize``): exact integer inference from a
self-contained file, in a process that never imports the network's module."""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from binflax import binarize, export, tracing
from binflax.testing import random_variables
from tests.export_net import ExportNet
from tests.test_export import PATHS, UNLINKED, assert_paths_agree

SHAPE = (12, 12, 3)
HYBRID = [  # a rule-based hybrid: block1 keeps float inputs, binary weights
    ("stem|head", "float", "float"),
    ("block1/.*", "float", "binary"),
    (".*", "binary", "binary"),
]
CASES = {
    "fbin": ("fbin", {}),
    "wbin": ("wbin", {}),
    "hybrid": (HYBRID, {}),
    # ReActNet's RSign and XNOR-Net's K map, both on the binary-input layers of a user net.
    "fbin_shift_kmap": ("fbin", {"input_norm": "shift", "scale_inputs": True}),
}

# A process that loads exported files and runs them, never importing the network's module.
# argv: {case: [[arithmetic, chain], ...]} as JSON, the images' .npy, the folder of the
# <case>.npz files, the .npz of logits it writes (keys "case/arithmetic/chain").
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from binflax import export
    cases = json.loads(sys.argv[1])
    images = np.load(sys.argv[2])
    out = {}
    for case, paths in cases.items():
        exported = export.load(f"{sys.argv[3]}/{case}.npz")
        for arithmetic, chain in paths:
            logits = export.integer_forward(exported, images, arithmetic=arithmetic, chain=chain)
            out[f"{case}/{arithmetic}/{chain}"] = np.asarray(logits)
    assert not [m for m in sys.modules if m == "tests" or m.startswith("tests.")], "imported"
    np.savez(sys.argv[4], **out)
    """
)


class ExportedCases:
    """Each case exported on first use, with the logits of this process's ``model.apply``:
    pytest-xdist may run this file's tests on two workers, and a worker that runs only
    the single-file tests then exports only the cases they read."""

    def __init__(self, directory):
        self.directory = directory
        self.images = np.asarray(jax.random.normal(jax.random.key(3), (3, *SHAPE)))
        np.save(directory / "images.npy", self.images)
        self.expected = {}

    def path(self, case: str):
        if case not in self.expected:
            plan, options = CASES[case]
            model = binarize(ExportNet(), plan, input_shape=SHAPE, **options)
            variables = random_variables(model, SHAPE, seed=list(CASES).index(case))
            self.expected[case] = np.asarray(model.apply(variables, self.images, train=False))
            export.export_model(model, variables, self.directory / f"{case}.npz")
        return self.directory / f"{case}.npz"


@pytest.fixture(scope="module")
def exported_cases(tmp_path_factory):
    return ExportedCases(tmp_path_factory.mktemp("byom_export"))


# Every linked path on the cases with packed links (fbin's chain, the hybrid's float-input
# binary layers); wbin and the shift/K-map case have their own units but no link, and run
# the default path. Unlinked, the packed arithmetics pack the same words in the consumer
# rather than the producer; test_export pins their accumulators layer by layer and
# test_export_integer runs every path on a grouped user network, so here, as in
# test_export for the full-size models, they are left out, and on a CPU with the kernel so
# is the native linked program, which is auto's.
LINKED = [
    p
    for p in PATHS
    if p not in UNLINKED and (jax.default_backend() != "cpu" or p != ("native", True))
]
FRESH_PATHS = {"fbin": LINKED, "hybrid": LINKED, "wbin": PATHS[:1], "fbin_shift_kmap": PATHS[:1]}


@pytest.mark.slow
def test_a_fresh_process_gives_the_first_ones_logits(exported_cases, tmp_path):
    assert set(FRESH_PATHS) == set(CASES)
    for case in CASES:
        exported_cases.path(case)
    directory, expected = exported_cases.directory, exported_cases.expected
    result = tmp_path / "logits.npz"
    subprocess.run(
        [
            sys.executable, "-c", FRESH_PROCESS, json.dumps(FRESH_PATHS),
            str(directory / "images.npy"), str(directory), str(result),
        ],
        check=True,
        cwd=tmp_path,  # not the repository: `tests` is not importable from here
    )  # fmt: skip
    logits = np.load(result)
    for case, want in expected.items():
        scale = float(np.max(np.abs(want)))
        first = None
        for arithmetic, chain in FRESH_PATHS[case]:
            got = logits[f"{case}/{arithmetic}/{chain}"]
            assert np.max(np.abs(got - want)) / scale <= 1e-5, (case, arithmetic, chain)
            first = got if first is None else first
            assert_paths_agree(got, first, scale, f"{case} {arithmetic} {chain}")


def test_the_file_records_every_layer_kind_and_the_packed_link(exported_cases):
    exported = export.load(exported_cases.path("fbin"))
    kinds = {info.name: info.geometry for info in exported.layers}
    assert kinds["head"].kind == kinds["Dense_0"].kind == "dense"
    assert kinds["grouped"].groups == 4 and kinds["grouped"].kernel_dilation == (2, 2)
    assert kinds["block1/shortcut"].strides == (2, 2)
    links = exported.header["variants"]["popcount_chain"]["links"]
    assert [(link["producer"], link["consumer"]) for link in links] == [("pair1", "pair2")]
    # the network's own batch norms travel as arrays of their own
    network = exported.network_variables()
    assert set(network["batch_stats"]["block0"]) == {"BatchNorm_0", "BatchNorm_1"}
    logits = np.asarray(export.integer_forward(exported, exported_cases.images))
    expected = exported_cases.expected["fbin"]
    assert np.max(np.abs(logits - expected)) / float(np.max(np.abs(expected))) <= 1e-5


def test_the_layers_traced_for_the_export_are_the_plans(exported_cases):
    model = binarize(ExportNet(), HYBRID, input_shape=SHAPE)
    traced = [(i.name, i.precision.input, i.precision.weight) for i in tracing.trace_layers(model)]
    exported = export.load(exported_cases.path("hybrid"))
    assert [(i.name, i.precision.input, i.precision.weight) for i in exported.layers] == traced
    assert ("block1/conv1", "float", "binary") in traced


def test_latency_on_a_file_without_its_class(exported_cases):
    images = exported_cases.images
    report = export.latency(export.load(exported_cases.path("fbin")), images[:1], repeats=2)
    assert report["float_apply_ms"] is None and report["float_ms"] == report["float_exported_ms"]
    assert report["ms"] > 0 and report["speedup"] > 0
