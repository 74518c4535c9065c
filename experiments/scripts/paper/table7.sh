#!/usr/bin/env bash
# Table 7 of the paper: per-class AP on VOC 2012 test of Table 4's five systems (the same runs).
# The evaluation server computes per-class APs from the comp4 archives these runs write; nothing
# is computed locally, so every cell of "ours" says "server".
# Usage: experiments/scripts/paper/table7.sh GPU_ID [--smoke]   (see common.sh)
set -euo pipefail
cd "$(dirname "$0")/../../.."
source experiments/scripts/paper/table4.sh
TABLE=table7

main() {
paper_setup "$@"
table4_rows
finish_table
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
