#!/usr/bin/env bash
# The main job: replay the bundled Alibaba GPU trace through the shipped policies,
# print the comparison table and write report.json + timeline.png to ./out/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DLSCALER_ROOT"
exec dlscaler simulate --trace data/alibaba_openb_2023_jobs.csv \
  --policy "${POLICIES:-static-peak,reactive,predictive,oracle}" --out "${OUT:-out}" "$@"
