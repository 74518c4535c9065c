"""Image sizes read from file headers (JPEG, PNG), without decoding the pixels.

Upstream read every size with PIL. Reading the few header bytes is as fast; other
formats fall back to a full OpenCV decode. Errors name the file.
"""

from __future__ import annotations

import struct

from frcnn.errors import InputError

# Start-of-frame markers carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_size(f, path: str) -> tuple[int, int]:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            raise InputError(f"{path}: truncated JPEG (no frame header found)")
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            raise InputError(f"{path}: truncated JPEG (no frame header found)")
        m = marker[0]
        if m in (0x01, 0x00) or 0xD0 <= m <= 0xD9:
            continue  # markers without a length field
        raw = f.read(2)
        if len(raw) != 2:
            raise InputError(f"{path}: truncated JPEG segment")
        (length,) = struct.unpack(">H", raw)
        if m in _SOF_MARKERS:
            data = f.read(5)
            if len(data) != 5:
                raise InputError(f"{path}: truncated JPEG frame header")
            _, height, width = struct.unpack(">BHH", data)
            return width, height
        f.seek(length - 2, 1)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of the image at ``path``; raises FileNotFoundError or ValueError naming it."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:2] == b"\xff\xd8":
                width, height = _jpeg_size(f, path)
            elif head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
            else:
                width = height = -1
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"{path}: expected an image file, found a directory") from None
    except PermissionError:
        raise PermissionError(f"{path}: image file is not readable") from None
    if width < 0:
        import cv2

        im = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if im is None:
            raise InputError(f"{path}: cannot read image (not a JPEG, PNG or other format OpenCV reads)")
        height, width = im.shape[:2]
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image header gives an empty size {width}x{height}")
    return int(width), int(height)
