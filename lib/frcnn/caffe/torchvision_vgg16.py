"""Import torchvision-format VGG16 ImageNet weights into our VGG16 layer names.

torchvision's VGG16 expects RGB in [0, 1] normalised per channel: ``x = (rgb / 255 - mean) / std``.
Our nets get BGR pixels minus ``PIXEL_MEANS``. Writing ``x_ours[b] = pixel[b] - PM[b]`` with
``b = 2 - c`` the BGR index of RGB channel ``c``:

    x_tv[c] = x_ours[2 - c] / (255 std[c]) + (PM[2 - c] / 255 - mean[c]) / std[c]

so conv1_1 becomes ``W'[:, 2 - c] = W[:, c] / (255 std[c])`` and
``b' = b + sum_{c,kh,kw} W[:, c, kh, kw] (PM[2 - c] / 255 - mean[c]) / std[c]``. The result is
exact wherever the 3x3 window lies inside the image; on the one-pixel border the two nets differ
only in what the zero padding stands for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from frcnn.errors import InputError, UnknownNameError

from .caffemodel import BlobData, CaffeModel, LayerData, write_caffemodel

TORCHVISION_MEAN = (0.485, 0.456, 0.406)  # RGB
TORCHVISION_STD = (0.229, 0.224, 0.225)  # RGB

#: torchvision key prefix -> our layer name (the ImageNet VGG16 caffemodel's names)
VGG16_LAYERS = {
    "features.0": "conv1_1", "features.2": "conv1_2",
    "features.5": "conv2_1", "features.7": "conv2_2",
    "features.10": "conv3_1", "features.12": "conv3_2", "features.14": "conv3_3",
    "features.17": "conv4_1", "features.19": "conv4_2", "features.21": "conv4_3",
    "features.24": "conv5_1", "features.26": "conv5_2", "features.28": "conv5_3",
    "classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8",
}
_SHAPES = {
    "conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128),
    "conv3_1": (256, 128), "conv3_2": (256, 256), "conv3_3": (256, 256),
    "conv4_1": (512, 256), "conv4_2": (512, 512), "conv4_3": (512, 512),
    "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512),
    "fc6": (4096, 25088), "fc7": (4096, 4096),
}


def fold_conv1(w: np.ndarray, b: np.ndarray, pixel_means_bgr: Sequence[float],
               mean: Sequence[float] = TORCHVISION_MEAN, std: Sequence[float] = TORCHVISION_STD
               ) -> tuple[np.ndarray, np.ndarray]:
    """conv1_1 weights (O, 3, kh, kw) taking torchvision input -> weights taking ours (see the
    module docstring). Computed in float64, returned as float32."""
    w = np.asarray(w, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    pm = np.asarray(pixel_means_bgr, dtype=np.float64).reshape(-1)
    if w.ndim != 4 or w.shape[1] != 3 or pm.size != 3:
        raise InputError(f"conv1_1 weight must be (O, 3, kh, kw) and pixel means 3 values; got {w.shape}, {pm.size}")
    out_w = np.empty_like(w)
    out_b = b.copy()
    for c in range(3):  # RGB channel c reads BGR channel 2 - c
        out_w[:, 2 - c] = w[:, c] / (255.0 * std[c])
        shift = (pm[2 - c] / 255.0 - mean[c]) / std[c]
        out_b += w[:, c].sum(axis=(1, 2)) * shift
    return out_w.astype(np.float32), out_b.astype(np.float32)


def _get(sd: Mapping[str, torch.Tensor], key: str, where: str) -> np.ndarray:
    if key not in sd:
        raise UnknownNameError(f"{where}: missing key '{key}' (is this a torchvision VGG16 state dict?)")
    return sd[key].detach().float().cpu().numpy()


def vgg16_caffemodel(sd: Mapping[str, torch.Tensor], pixel_means_bgr: Sequence[float],
                     where: str = "state dict", require_classifier: bool = True) -> CaffeModel:
    """A CaffeModel with our VGG16 layer names from a torchvision VGG16 state dict
    (``require_classifier=False`` accepts a convolutional-only state dict)."""
    if any("running_mean" in k for k in sd):
        raise InputError(f"{where}: has BatchNorm statistics (vgg16_bn); only plain VGG16 is supported")
    model = CaffeModel(name="VGG_ILSVRC_16_layers")
    for prefix, name in VGG16_LAYERS.items():
        if f"{prefix}.weight" not in sd and (name == "fc8" or (name.startswith("fc") and not require_classifier)):
            continue  # detection nets do not use fc8
        w, b = _get(sd, f"{prefix}.weight", where), _get(sd, f"{prefix}.bias", where)
        if name in _SHAPES:
            out_c, in_c = _SHAPES[name]
            if w.shape[0] != out_c or w.shape[1] != in_c or b.shape != (out_c,):
                raise InputError(f"{where}: '{prefix}.weight' has shape {w.shape} (bias {b.shape}); "
                                 f"VGG16 {name} needs ({out_c}, {in_c}, ...)")
        if name == "conv1_1":
            w, b = fold_conv1(w, b, pixel_means_bgr)
        model.layers.append(LayerData(name, "InnerProduct" if name.startswith("fc") else "Convolution",
                                      [BlobData(w), BlobData(b)]))
    return model


def import_torchvision_vgg16(src: str, dst: str, pixel_means_bgr: Sequence[float] | None = None,
                             require_classifier: bool = True) -> CaffeModel:
    """Read a torchvision VGG16 ``.pth`` state dict (``weights_only``) and write ``dst`` as a
    .caffemodel for our VGG16 nets. ``pixel_means_bgr`` defaults to the config's PIXEL_MEANS;
    ``require_classifier=False`` accepts a state dict without fc6/fc7."""
    if pixel_means_bgr is None:
        from frcnn.config import get_default_config

        pixel_means_bgr = np.asarray(get_default_config().PIXEL_MEANS).reshape(-1).tolist()
    try:
        sd = torch.load(src, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{src}: no such file") from None
    except Exception as e:  # noqa: BLE001 (torch.load raises many kinds; the message is what matters)
        raise InputError(f"{src}: cannot load as a torch state dict: {e}") from None
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise InputError(f"{src}: expected a state dict (name -> tensor)")
    model = vgg16_caffemodel(sd, pixel_means_bgr, where=src, require_classifier=require_classifier)
    write_caffemodel(dst, model)
    return model
