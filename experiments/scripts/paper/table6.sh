#!/usr/bin/env bash
# Table 6 of the paper: per-class AP on VOC 2007 test of Table 3's six systems (the same runs: a
# run made by table3.sh is not trained or tested again; a row not yet run is run here for both).
# Usage: experiments/scripts/paper/table6.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
source experiments/scripts/paper/table3.sh
TABLE=table6

main() {
paper_setup "$@"
table3_rows   # the rows of Table 3, each recording its 20 classes' AP and the mean
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
