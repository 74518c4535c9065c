"""Training: the solver wrapper and its loop (``train``), snapshots and resume (``snapshot``),
the training roidb (``data``) and the 4-step alternating optimisation (``alt_opt``)."""
