import cv2
import numpy as np
import pytest

from frcnn.utils.blob import im_list_to_blob, im_scale_for, prep_im_for_blob, read_image

MEANS = np.array([[[102.9801, 115.9465, 122.7717]]])


def test_scale_rule_examples():
    # a 500x375 VOC image -> 1.6 -> 800x600
    im = np.zeros((375, 500, 3), np.uint8)
    out, s = prep_im_for_blob(im, MEANS, 600, 1000)
    assert s == pytest.approx(1.6) and out.shape == (600, 800, 3) and out.dtype == np.float32
    # the longer side would be 3000 > 1000: capped
    assert im_scale_for((200, 1000), 600, 1000) == pytest.approx(1.0)
    # round(scale * max) == MAX_SIZE exactly is still allowed
    assert im_scale_for((300, 500), 600, 1000) == pytest.approx(2.0)
    assert im_scale_for((300, 501), 600, 1000) == pytest.approx(1000 / 501)


def test_mean_subtraction_bgr_no_scaling_of_values():
    im = np.zeros((4, 6, 3), np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 10, 20, 30  # B, G, R
    out, s = prep_im_for_blob(im, MEANS, 4, 100)
    assert s == 1.0
    np.testing.assert_allclose(out[0, 0], [10 - 102.9801, 20 - 115.9465, 30 - 122.7717], rtol=1e-6)
    ref = cv2.resize(
        im.astype(np.float32) - MEANS.astype(np.float32), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR
    )
    np.testing.assert_allclose(prep_im_for_blob(im, MEANS, 8, 100)[0], ref, atol=1e-4)


def test_im_list_to_blob_pads_top_left_nchw():
    a = np.ones((2, 3, 3), np.float32)
    b = np.full((4, 1, 3), 2, np.float32)
    blob = im_list_to_blob([a, b])
    assert blob.shape == (2, 3, 4, 3) and blob.dtype == np.float32 and blob.flags.c_contiguous
    assert (blob[0, :, :2, :3] == 1).all() and (blob[0, :, 2:, :] == 0).all()
    assert (blob[1, :, :, :1] == 2).all() and (blob[1, :, :, 1:] == 0).all()
    b[0, 0] = [7, 8, 9]
    assert im_list_to_blob([b])[0, :, 0, 0].tolist() == [7, 8, 9]  # channel order kept (BGR)


def test_read_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.jpg"):
        read_image(str(tmp_path / "none.jpg"))
    p = tmp_path / "g.png"
    cv2.imwrite(str(p), np.full((5, 7), 9, np.uint8))  # grayscale file -> 3 channels
    assert read_image(str(p)).shape == (5, 7, 3)
