"""Every CAM method against pytorch-grad-cam on the same weights and layer: the heat maps at input
resolution agree value for value (both normalise each map to [0, 1] at layer resolution, resize,
and normalise again) and correlate >= 0.99. pytorch-grad-cam resizes with cv2 and its Score-CAM
upsamples the masks with align_corners=True: small, not zero, differences."""

from __future__ import annotations

import nets
import numpy as np
import pytest
import torch

import onnxlens
from onnxlens.methods.layers import default_layer

pgc = nets.import_pytorch_grad_cam()

# (ours, theirs) -- CAM is compared with Grad-CAM: on GAP -> FC networks both are
# sum_c W[k, c] A_c up to a positive factor, and pytorch-grad-cam has no plain CAM class.
PAIRS = [
    ("CAM", "GradCAM"),
    ("GradCAM", "GradCAM"),
    ("GradCAMPlusPlus", "GradCAMPlusPlus"),
    ("XGradCAM", "XGradCAM"),
    ("HiResCAM", "HiResCAM"),
    ("LayerCAM", "LayerCAM"),
    ("EigenCAM", "EigenCAM"),
    ("ScoreCAM", "ScoreCAM"),
    ("AblationCAM", "AblationCAM"),
]


def theirs(name: str, net, layer, x: np.ndarray, target) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pgc, name)
    targets = None if target is None else [ClassifierOutputTarget(int(t)) for t in target]
    with cls(model=net, target_layers=[layer]) as cam:
        if name == "ScoreCAM":
            cam.batch_size = 64
        return cam(input_tensor=torch.from_numpy(x), targets=targets)


def same_maps(ours: np.ndarray, ref: np.ndarray, what: str, atol: float = 1e-4) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32, what
    for i in range(len(ref)):
        if np.ptp(ref[i]) == 0:  # a negative map is clipped to zero by both: constant maps -> zeros
            assert np.all(ours[i] == 0), (what, i)
        else:
            assert nets.corr(ours[i], ref[i]) >= 0.99, (what, i)
    # The values themselves (and so the [0, 1] range), not only the shape of the map.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=atol, err_msg=what)


@pytest.mark.parametrize(("ours", "ref"), PAIRS)
@pytest.mark.parametrize("target", [None, [3, 7]])
def test_cam_family_matches_pytorch_grad_cam_vgg(vgg, ours: str, ref: str, target) -> None:
    net, model, x = vgg
    exp = getattr(onnxlens, ours)(model, progress=False).attribute(x, target=target)
    ref_maps = theirs(ref, net, net.features[-1], x, target)
    assert ref_maps.shape == (2, 64, 64)
    same_maps(exp.heatmap, ref_maps, ours)
    if target is not None:
        assert exp.target.tolist() == target
    else:
        assert exp.target.tolist() == net(torch.from_numpy(x)).argmax(1).tolist()


@pytest.mark.parametrize(
    ("ours", "ref"), [p for p in PAIRS if p[0] not in ("ScoreCAM", "AblationCAM", "EigenCAM")]
)
def test_gradient_cams_match_pytorch_grad_cam_resnet18(resnet18, ours: str, ref: str) -> None:
    net, model, x = resnet18
    assert default_layer(model) == "/layer4/layer4.1/Relu_1_output_0"
    exp = getattr(onnxlens, ours)(model, progress=False).attribute(x, target=[1, 500])
    ref_maps = theirs(ref, net, net.layer4[-1], x, [1, 500])
    assert np.ptp(ref_maps[0]) > 0
    same_maps(exp.heatmap, ref_maps, ours)


def test_multi_layer_average_matches_pytorch_grad_cam(resnet18) -> None:
    """Two layers (the full VJP graph path: layer3 has a skip connection around it)."""
    net, model, x = resnet18
    layers = ["/layer3/layer3.1/Relu_1_output_0", "/layer4/layer4.1/Relu_1_output_0"]
    exp = onnxlens.GradCAM(model, layer=layers).attribute(x, target=[2, 9])
    with pgc.GradCAM(model=net, target_layers=[net.layer3[-1], net.layer4[-1]]) as cam:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        ref = cam(
            input_tensor=torch.from_numpy(x),
            targets=[ClassifierOutputTarget(2), ClassifierOutputTarget(9)],
        )
    assert set(exp.raw) == set(layers)
    assert exp.raw[layers[0]].shape == (2, 7, 7) and exp.raw[layers[1]].shape == (2, 4, 4)
    # pytorch-grad-cam averages the per-layer maps after resizing each with cv2; so do we, with
    # our own bilinear resize, and the 7x7 and 4x4 maps magnify the resize differences.
    same_maps(exp.heatmap, ref, "multi-layer", atol=5e-3)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """A 4-block ViT-B/16-style transformer (tests/zoo.py) at 64x64: a 4x4 token grid + class token."""
    from zoo import ViTB16

    torch.manual_seed(0)
    net = ViTB16(image_size=64, num_classes=10, depth=4).eval()
    path = nets.export(net, tmp_path_factory.mktemp("vit") / "vit.onnx", (64, 64))
    return net, onnxlens.Model(path, threads=2), nets.images(2, (64, 64), seed=3)


def vit_reshape(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's documented ViT reshape_transform: drop the class token, tokens -> grid."""
    grid = t[:, 1:, :].reshape(t.size(0), 4, 4, t.size(2))
    return grid.permute(0, 3, 1, 2)


@pytest.mark.parametrize(("ours", "ref"), [("GradCAM", "GradCAM"), ("LayerCAM", "LayerCAM")])
def test_vit_token_maps_match_pytorch_grad_cam(vit, ours: str, ref: str) -> None:
    """(N, tokens, C) maps: the grid is inferred from the token count (16 + class token)."""
    net, model, x = vit
    # The first LayerNorm of the last block, the layer pytorch-grad-cam's ViT tutorial uses.
    layer = next(
        la.name
        for la in reversed(model.layers)
        if la.op in ("LayerNormalization", "Add") and "blocks.3/ln1" in la.name
    )
    exp = getattr(onnxlens, ours)(model, layer=layer, progress=False).attribute(x, target=[1, 4])
    assert exp.heatmap.shape == (2, 64, 64)
    raw = exp.raw if not isinstance(exp.raw, dict) else exp.raw[layer]
    assert raw.shape == (2, 4, 4)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(pgc, ref)(
        model=net, target_layers=[net.blocks[-1].ln1], reshape_transform=vit_reshape
    ) as cam:
        ref_maps = cam(
            input_tensor=torch.from_numpy(x),
            targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(4)],
        )
    same_maps(exp.heatmap, ref_maps, f"ViT {ours}")
