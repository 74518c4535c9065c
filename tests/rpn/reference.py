"""Plain-NumPy pieces of upstream's arithmetic shared by the RPN layer tests."""

import numpy as np


def ref_encode(ex, gt):
    """Upstream's bbox_transform written out: (dx, dy, dw, dh) taking each ``ex`` row to its ``gt`` row."""
    ew, eh = ex[:, 2] - ex[:, 0] + 1.0, ex[:, 3] - ex[:, 1] + 1.0
    gw, gh = gt[:, 2] - gt[:, 0] + 1.0, gt[:, 3] - gt[:, 1] + 1.0
    ex_x, ex_y = ex[:, 0] + 0.5 * ew, ex[:, 1] + 0.5 * eh
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return np.vstack(((gx - ex_x) / ew, (gy - ex_y) / eh, np.log(gw / ew), np.log(gh / eh))).T
