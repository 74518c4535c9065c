"""Importing torchvision VGG16 weights: the folded conv1_1 equals torchvision preprocessing + conv."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frcnn.caffe import Net
from frcnn.caffe.caffemodel import read_caffemodel
from frcnn.caffe.prototxt import parse
from frcnn.caffe.torchvision_vgg16 import (
    TORCHVISION_MEAN,
    TORCHVISION_STD,
    VGG16_LAYERS,
    fold_conv1,
    import_torchvision_vgg16,
    vgg16_caffemodel,
)

PIXEL_MEANS = (102.9801, 115.9465, 122.7717)  # BGR, the config's default


def torchvision_input(bgr_pixels: torch.Tensor) -> torch.Tensor:
    """torchvision's preprocessing of a (N,3,H,W) BGR 0-255 image: RGB, /255, (x - mean) / std."""
    rgb = bgr_pixels.flip(1) / 255.0
    mean = torch.tensor(TORCHVISION_MEAN, dtype=rgb.dtype)[None, :, None, None]
    std = torch.tensor(TORCHVISION_STD, dtype=rgb.dtype)[None, :, None, None]
    return (rgb - mean) / std


def our_input(bgr_pixels: torch.Tensor) -> torch.Tensor:
    return bgr_pixels - torch.tensor(PIXEL_MEANS, dtype=bgr_pixels.dtype)[None, :, None, None]


def test_folded_conv1_matches_torchvision_preprocessing_in_the_interior():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64) * 0.2
    b = torch.randn(8, generator=g, dtype=torch.float64)
    img = torch.rand(2, 3, 9, 11, generator=g, dtype=torch.float64) * 255
    ref = F.conv2d(torchvision_input(img), w, b, padding=1)
    w2, b2 = fold_conv1(w.numpy(), b.numpy(), PIXEL_MEANS)
    got = F.conv2d(our_input(img).float(), torch.from_numpy(w2), torch.from_numpy(b2), padding=1).double()
    assert torch.allclose(got[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-4)
    assert not torch.allclose(got, ref, atol=1e-2)  # the border differs: padding means different things


def random_features_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    cin = 3
    for prefix, name in VGG16_LAYERS.items():
        if not prefix.startswith("features"):
            continue
        cout = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}[name[4]]
        sd[f"{prefix}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        sd[f"{prefix}.bias"] = torch.randn(cout, generator=g) * 0.1
        cin = cout
    return sd


def test_import_writes_our_layer_names_and_loads_into_a_net(tmp_path):
    sd = random_features_state_dict()
    src, dst = str(tmp_path / "vgg16.pth"), str(tmp_path / "VGG16.v2.caffemodel")
    torch.save(sd, src)
    with pytest.raises(KeyError, match="missing key 'classifier.0.weight'"):
        import_torchvision_vgg16(src, dst, PIXEL_MEANS)
    import_torchvision_vgg16(src, dst, PIXEL_MEANS, require_classifier=False)
    model = read_caffemodel(dst)
    assert [x.name for x in model.layers] == [f"conv{i}_{j}" for i, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                                              for j in range(1, n + 1)]
    assert np.array_equal(model.layer("conv3_2").blobs[0].array, sd["features.12.weight"].numpy())
    net = Net(parse('''name: "VGG_ILSVRC_16_layers" input: "data" input_shape { dim: 1 dim: 3 dim: 10 dim: 12 }
        layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1" convolution_param { num_output: 64 pad: 1 kernel_size: 3 } }
        layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
        layer { name: "conv1_2" type: "Convolution" bottom: "conv1_1" top: "conv1_2" convolution_param { num_output: 64 pad: 1 kernel_size: 3 } }''',
                    "vgg.prototxt"), weights=dst)
    img = torch.rand(1, 3, 10, 12, dtype=torch.float64) * 255
    got = net.forward(data=our_input(img).float())["conv1_2"].double()
    x = F.relu(F.conv2d(torchvision_input(img), sd["features.0.weight"].double(), sd["features.0.bias"].double(), padding=1))
    ref = F.conv2d(x, sd["features.2.weight"].double(), sd["features.2.bias"].double(), padding=1)
    # two stacked 3x3 convs: exact two pixels in from the border
    assert torch.allclose(got[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)


def test_import_rejects_wrong_state_dicts():
    sd = random_features_state_dict()
    sd["features.5.weight"] = torch.zeros(128, 32, 3, 3)
    with pytest.raises(ValueError, match=r"'features.5.weight' has shape \(128, 32, 3, 3\)"):
        vgg16_caffemodel(sd, PIXEL_MEANS, require_classifier=False)
    with pytest.raises(ValueError, match="vgg16_bn"):
        vgg16_caffemodel({"features.1.running_mean": torch.zeros(64)}, PIXEL_MEANS)
