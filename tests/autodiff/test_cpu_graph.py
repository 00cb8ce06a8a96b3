"""CPU tuning of VJP graphs (static batch, NCHWc entry points): same gradients as the plain graph
and as torch autograd, and the padding of a short last batch when Model runs the tuned graph."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from vjp_helpers import session

from onnxlens import Model
from onnxlens.autodiff import build_vjp
from onnxlens.autodiff.cpu_graph import specialise_batch, tune_for_cpu

torch = pytest.importorskip("torch", reason="torch (extra: demo) exports the test network")
nn = torch.nn
sys.path.insert(0, str(Path(__file__).parents[1]))
import zoo  # noqa: E402


def _net() -> nn.Module:
    """Strided 3x3 and 1x1 convs (ConvTranspose gradients), an overlapping MaxPool (scatter) and
    global pooling (Expand): each hands the gradient over in NCHW; channels multiples of 16."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.a = nn.Sequential(
                nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1)
            )
            self.skip = nn.Conv2d(16, 32, 1, 2)
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            h = self.pool(self.stem(x))
            h = torch.relu(self.a(h) + self.skip(h))
            return self.head(h.mean((2, 3)))

    return Net().eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("cpu_graph") / "net.onnx"
    net = _net()
    zoo.export(net, path, (32, 32), batch=2)
    return net, path


def test_tuned_graph_equals_plain_graph_and_torch(exported):
    net, path = exported
    vg = build_vjp(onnx.load(str(path)), ["logits"], ["input"])
    tuned = tune_for_cpu(vg.proto, 3)
    added = [n for n in tuned.graph.node if n.name.endswith("_nchwc_node")]
    assert added, "no NCHWc entry Conv was inserted"
    assert all(v.type.tensor_type.shape.dim[0].dim_value == 3 for v in tuned.graph.input), (
        "the batch was not pinned"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    c = rng.standard_normal((3, 10)).astype(np.float32)
    feeds = {"input": x, vg.seed_inputs["logits"]: c}
    fetch = [vg.grad_outputs["input"]]
    plain = session(vg.proto).run(fetch, feeds)[0]
    got = session(tuned).run(fetch, feeds)[0]
    np.testing.assert_allclose(got, plain, rtol=0, atol=1e-6 * np.abs(plain).max())
    xt = torch.from_numpy(x).requires_grad_(True)
    net(xt).backward(torch.from_numpy(c))
    ref = xt.grad.numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_specialise_batch_keeps_other_dims(exported):
    _, path = exported
    vg = build_vjp(onnx.load(str(path)), ["logits"], ["input"])
    pinned = specialise_batch(vg.proto, 5)
    dims = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in pinned.graph.input
    }
    assert dims["input"] == [5, 3, 32, 32]
    assert dims[vg.seed_inputs["logits"]] == [5, 10]


def test_model_pads_the_last_batch_of_a_tuned_session(exported):
    _, path = exported
    m = Model(str(path), device="cpu", threads=2)
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    targets = np.array([1, 2, 3, 4, 5])
    whole = m.gradient(x, targets, batch_size=5)
    split = m.gradient(x, targets, batch_size=2)  # runs 2 + 2 + 1 padded to 2
    one_by_one = np.concatenate([m.gradient(x[i : i + 1], targets[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(split, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
    np.testing.assert_allclose(one_by_one, whole, rtol=0, atol=1e-6 * np.abs(whole).max())


def test_specialise_batch_leaves_extra_inputs_alone():
    """Only the image input and the grad/ seeds are batch-major; a model's extra input with a
    dynamic first dim (a per-model table, a scale list) must not be pinned."""
    from onnx import TensorProto, helper

    ins = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
        helper.make_tensor_value_info("table", TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info("grad/seed/y_0", TensorProto.FLOAT, ["batch", 3]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", ins, [out])
    pinned = specialise_batch(helper.make_model(graph), 4)
    dims = {
        v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        for v in [*pinned.graph.input, *pinned.graph.output]
    }
    assert dims == {"x": [4, 3], "table": ["K"], "grad/seed/y_0": [4, 3], "y": [4, 3]}
