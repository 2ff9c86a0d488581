#!/usr/bin/env bash
# The controller's scale benchmark: builds release binaries, then creates 1,000 resources on
# real satellites (FILE_THIN pools on loop devices, needs root), 100,000 on 16 simulated ones
# and 10,000 replicated ones for phase C, times one satellite answering its full state (phase
# S), and prints a report of throughput, memory, cold start and read latency against baselines
# measured in the same run. See docs/benchmarks.md.
#
#   scripts/bench.sh                      # everything; the report also goes to target/bench-report.md
#   scripts/bench.sh --skip-real --skip-options     # phases B and S (no root needed)
#   scripts/bench.sh --skip-real --skip-simulated --skip-options   # phase S alone (20 s)
#   scripts/bench.sh --skip-real --skip-options --simulated-resources 10000 --simulated-nodes 4
#                                         # phase B at its former size (about 14 minutes)
#   scripts/bench.sh --real-budget 600    # give phase A more time
#   scripts/bench.sh --help               # every option
#
# BENCH_REPORT sets the report file; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
report=${BENCH_REPORT:-$target_dir/bench-report.md}

echo "== cargo build --release (controller, satellite, bench)" >&2
cargo build --release -p ferrite-controller -p ferrite-satellite -p ferrite-bench >&2

mkdir -p "$(dirname "$report")"
exec "$target_dir/release/ferrite-bench" --bin-dir "$target_dir/release" --report "$report" "$@"
