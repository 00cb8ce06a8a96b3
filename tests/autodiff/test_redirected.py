"""The "redirected" rule set (lucid's redirected ReLU/ReLU6 gradients) against a PyTorch autograd
implementation of lucid's rule, written here in lucid's own convention (a loss minimised)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from vjp_helpers import op_model, session

from onnxlens import Model
from onnxlens.autodiff import build_vjp

sys.path.insert(0, str(Path(__file__).parents[1]))
import zoo

torch.set_num_threads(2)


def _select(x, grad, relu_grad, blocked):
    """lucid: per batch row, the true gradient if it is non-zero anywhere, else the gradient
    with the components that push further out of the linear part zeroed."""
    redirected = torch.where(blocked, torch.zeros_like(grad), grad)
    alive = relu_grad.flatten(1).norm(dim=1) > 0
    return torch.where(alive.view(-1, *([1] * (x.dim() - 1))), relu_grad, redirected)


class LucidRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):  # grad = d loss / d y
        (x,) = ctx.saved_tensors
        relu_grad = torch.where(x < 0, torch.zeros_like(grad), grad)
        return _select(x, grad, relu_grad, (x < 0) & (grad > 0))


class LucidRelu6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        relu_grad = torch.where((x < 0) | (x > 6), torch.zeros_like(grad), grad)
        blocked = ((x < 0) & (grad > 0)) | ((x > 6) & (grad < 0))
        return _select(x, grad, relu_grad, blocked)


class Net(torch.nn.Module):
    """conv -> ReLU -> conv -> ReLU6 -> mean -> linear, with positive first weights so a
    negative image kills every first ReLU of its row and a bright one saturates the ReLU6."""

    def __init__(self, lucid: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 5, 3, padding=1)
        self.fc = torch.nn.Linear(5, 3)
        with torch.no_grad():
            self.c1.weight.abs_()
            self.c1.bias.zero_()
            self.c2.weight.abs_()
            self.c2.bias.fill_(0.5)
            self.fc.weight[0].abs_()  # class 0 wants every unit up: row 0's dead ReLUs get pulled
        self.lucid = lucid

    def forward(self, x):
        relu = LucidRelu.apply if self.lucid else torch.relu
        relu6 = LucidRelu6.apply if self.lucid else torch.nn.functional.relu6
        h = relu6(self.c2(relu(self.c1(x))))
        return self.fc(h.mean((2, 3)))


@pytest.fixture(scope="module")
def net_model(tmp_path_factory):
    net = Net().eval()
    path = tmp_path_factory.mktemp("redirected") / "net.onnx"
    zoo.export(net, path, (8, 8), batch=3)
    return Model(path, device="cpu", threads=2)


def test_matches_lucid_rule_in_torch(net_model):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    x[0] = -np.abs(x[0]) - 0.1  # every first ReLU of row 0 is off: the true gradient is 0
    x[1] = np.abs(x[1]) * 50 + 5  # the ReLU6 of row 1 saturates everywhere
    targets = [0, 1, 2, 0]
    ours = net_model.gradient(x, targets, rules="redirected")
    default = net_model.gradient(x, targets)

    ref_net = Net(lucid=True).eval()
    xt = torch.from_numpy(x).requires_grad_(True)
    logits = ref_net(xt)
    loss = -logits[torch.arange(4), torch.tensor(targets)].sum()  # lucid minimises -objective
    loss.backward()
    ref = -xt.grad.numpy()  # back to d objective / d x

    assert np.abs(default[0]).max() == 0 and np.abs(default[1]).max() == 0  # dead rows
    assert np.abs(ours[0]).max() > 0 and np.abs(ours[1]).max() > 0  # redirected: they move
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())
    # rows with a true gradient are unchanged
    np.testing.assert_allclose(ours[2:], default[2:], rtol=1e-5, atol=1e-7)


def test_single_relu_row_selection():
    """Relu alone: the dead row gets relu(g) at its negative inputs, the live row its true
    gradient; lucid's rule by hand."""
    m = op_model("Relu", {"x": ["N", 4]})
    x = np.array([[-1.0, -2.0, -3.0, -4.0], [-1.0, 2.0, 3.0, -4.0]])
    c = np.array([[1.0, -1.0, 2.0, -5.0], [1.0, -1.0, 2.0, 5.0]])
    vg = build_vjp(m, ["y0"], ["x"], rules="redirected")
    (g,) = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y0"]: c})
    np.testing.assert_array_equal(g, [[1.0, 0.0, 2.0, 0.0], [0.0, -1.0, 2.0, 0.0]])
