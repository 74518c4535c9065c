"""Inference: ``im_detect`` / ``test_net`` (``test``), detection files (``detections``), the demo
(``demo``) and the paper's per-stage timing (``timing``)."""
