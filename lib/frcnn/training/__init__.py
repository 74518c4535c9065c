"""Training: the solver wrapper (``train``), its loop and the hooks that do each step's work
(``loop``, ``hooks``), snapshots and resume (``snapshot``), the output folder's lock
(``run_lock``), the training roidb (``data``) and the 4-step alternating optimisation (``alt_opt``)."""
