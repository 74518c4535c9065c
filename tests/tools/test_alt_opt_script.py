"""experiments/scripts/faster_rcnn_alt_opt.sh's STOP_AFTER (the tool's --stop_after) is checked
before anything starts."""

from tests.tools.test_scripts import run_script


def test_a_bad_stop_after_is_named_before_a_log_starts():
    r = run_script("faster_rcnn_alt_opt.sh", "cpu", "SMALL", "pascal_voc", STOP_AFTER="5")
    assert r.returncode == 1 and "STOP_AFTER must be 1, 2, 3 or 4, got '5'" in r.stderr
    assert "Logging output" not in r.stdout

