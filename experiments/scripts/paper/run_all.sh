#!/usr/bin/env bash
# Every table of the paper and Figure 4, one after the other, then output/paper/REPORT.md.
# Usage: experiments/scripts/paper/run_all.sh GPU_ID [--smoke]
# The tables share their models (output/paper/models): each is trained once, by the first table
# that needs it; a rerun skips what is done and resumes what is not. With --smoke (output/paper_smoke)
# it ends with `tools/paper_report.py --check`, which fails on a missing table or a number that is
# not finite (CI runs this).
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ "$#" -ge 1 ] || { echo "Usage: $0 GPU_ID [--smoke]" >&2; exit 1; }
PYTHON="${PYTHON:-python}"
start=$(date +%s)
for t in table1 table2 table3 table4 table5 table6 table7 table8 table9 table10 table11 table12 fig4; do
  t0=$(date +%s)
  "experiments/scripts/paper/$t.sh" "$@"
  echo "== $t finished in $(( $(date +%s) - t0 )) s"
done
root="${PAPER_OUT:-output/paper}"
check=()
if [ "${2:-}" = --smoke ]; then root="${PAPER_OUT:-output/paper_smoke}"; check=(--check); fi
"$PYTHON" tools/paper_report.py --root "$root" "${check[@]}"
echo "== all tables in $(( $(date +%s) - start )) s: $root/REPORT.md"
