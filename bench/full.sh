#!/usr/bin/env bash
# The whole performance table of docs/performance.md, in one command (about 1 h 30 on 2 cores):
#   bench/full.sh postgresql+psycopg://USER:PW@127.0.0.1/EMPTY_DB_1M postgresql+psycopg://USER:PW@127.0.0.1/EMPTY_DB_10K
# Two empty PostgreSQL databases (the loader refuses one that holds patients); wrk installed
# (Debian: apt-get install wrk); plots need `pip install -e '.[bench]'`. Data directories go under
# ${BENCH_DATA:-/tmp}; rerunning reuses populations already loaded there. The PostgreSQL settings
# of the published figures are in docs/performance.md (Method).
set -euo pipefail
cd "$(dirname "$0")/.."
big=${1:?the URL of an empty PostgreSQL database for 1,000,000 patients}
small=${2:?the URL of another empty PostgreSQL database for 10,000 patients}
data=${BENCH_DATA:-/tmp}
py=.venv/bin/python
$py bench/load.py --database-url "$big" --data-dir "$data/dmp-bench-1m" --patients 1000000 \
  --reuse --seconds 15 --soak 600
$py bench/load.py --database-url "$big" --data-dir "$data/dmp-bench-1m" --patients 1000000 \
  --reuse --seconds 15 --workloads W1 --no-baselines --label=-w1-final
$py bench/load.py --database-url "$small" --data-dir "$data/dmp-bench-10k" --patients 10000 \
  --reuse --seconds 15 --workloads W1,W2,W3,W5 --no-baselines
$py bench/load.py --database-url "$small" --data-dir "$data/dmp-bench-10k" --patients 10000 \
  --reuse --seconds 15 --workloads W1 --no-baselines --label=-w1-final
$py bench/load.py --data-dir "$data/dmp-bench-sqlite" --patients 10000 --reuse --seconds 15 \
  --concurrency 1,8,32
$py bench/report.py
