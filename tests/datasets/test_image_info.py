import os

import cv2
import numpy as np
import pytest

from frcnn.datasets.image_info import image_size


@pytest.mark.parametrize(
    "ext,params",
    [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []), (".bmp", [])],
)
def test_sizes_match_a_full_decode(tmp_path, ext, params):
    rng = np.random.RandomState(0)
    for w, h in [(37, 21), (300, 17), (8, 640)]:
        path = str(tmp_path / f"im_{w}_{h}{ext}")
        assert cv2.imwrite(path, rng.randint(0, 255, size=(h, w, 3)).astype(np.uint8), params)
        assert image_size(path) == (w, h)
        assert cv2.imread(path).shape[:2] == (h, w)


def test_jpeg_with_exif_like_app_segments(tmp_path):
    # an APP1 segment holding 0xFF bytes before the frame header must be skipped by length
    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, np.zeros((13, 29, 3), np.uint8))
    with open(path, "rb") as f:
        data = f.read()
    payload = b"Exif\x00\x00" + b"\xff\xc0" * 20
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    with open(path, "wb") as f:
        f.write(data[:2] + app1 + data[2:])
    assert image_size(path) == (29, 13)


def test_missing_and_unreadable_files_are_named(tmp_path):
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        image_size(missing)
    bad = str(tmp_path / "bad.jpg")
    with open(bad, "wb") as f:
        f.write(b"not an image at all")
    with pytest.raises(ValueError, match="bad.jpg"):
        image_size(bad)
    trunc = str(tmp_path / "trunc.jpg")
    with open(trunc, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(ValueError, match="trunc.jpg"):
        image_size(trunc)
    with pytest.raises(FileNotFoundError, match="directory"):
        image_size(str(tmp_path))
    assert os.path.exists(bad)
