#!/usr/bin/env bash
# What the FUSE + loop block device costs: fio against a raw file (the baseline), against the
# loop device of the same file served by ferrite-blockdev, and against a null volume (the
# frontend alone), in the same run. Needs root. Prints mean ± stdev over the repetitions.
#
#   scripts/bench-blockdev.sh                 # 3 repetitions of 15 s per workload
#   RUNTIME=30 REPEAT=5 scripts/bench-blockdev.sh
#
# Workloads: 4 KiB random writes at queue depth 32, 1 MiB sequential writes at queue depth 4
# (libaio, O_DIRECT, one job). BENCH_DIR (default: a directory under target/) holds the 1 GiB
# file; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=${RUNTIME:-15}
repeat=${REPEAT:-3}
size=${SIZE:-1G}
target_dir=${CARGO_TARGET_DIR:-target}
bench_dir=${BENCH_DIR:-$target_dir/bench-blockdev}

[ "$(id -u)" -eq 0 ] || { echo "needs root (FUSE mount, loop devices)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio is missing: run scripts/setup.sh" >&2; exit 1; }

echo "== cargo build --release --example blockdev_file_server" >&2
cargo build --release -q -p ferrite-blockdev --example blockdev_file_server >&2
server_bin=$target_dir/release/examples/blockdev_file_server

mkdir -p "$bench_dir"
bench_dir=$(cd "$bench_dir" && pwd)
raw=$bench_dir/raw.img
rm -f "$raw"
fallocate -l "$size" "$raw"
# Written once before measuring, so no run pays for converting unwritten extents.
fio --name=fill --filename="$raw" --rw=write --bs=1M --iodepth=8 --ioengine=libaio --direct=1 \
    --size="$size" --output=/dev/null

server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -f "$raw"' EXIT

# start_server ARGS...: serves a volume and sets $device to its loop device.
start_server() {
    rm -f "$bench_dir/ready"
    "$server_bin" --dir "$bench_dir/serve" --ready-file "$bench_dir/ready" "$@" \
        >/dev/null 2>"$bench_dir/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        [ -s "$bench_dir/ready" ] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$bench_dir/server.log" >&2; exit 1; }
        sleep 0.1
    done
    device=$(cat "$bench_dir/ready")
}

# run_fio TARGET NAME RW BS DEPTH: prints "iops MiB/s" of one run.
run_fio() {
    fio --name="$2" --filename="$1" --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio \
        --direct=1 --numjobs=1 --time_based --runtime="$runtime" --ramp_time=2 \
        --size="$size" --group_reporting --output-format=json \
        | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print(j["iops"], j["bw"]/1024)'
}

declare -A results
measure() { # LABEL TARGET
    local label=$1 target=$2
    for workload in "randwrite 4k 32" "write 1M 4"; do
        set -- $workload
        for _ in $(seq "$repeat"); do
            results["$label|$1 $2 QD$3"]+="$(run_fio "$target" "$label" "$1" "$2" "$3");"
        done
    done
}

echo "== raw file $raw" >&2
measure raw "$raw"
echo "== FUSE + loop over the same file" >&2
start_server --file "$raw"
echo "   $device, direct I/O: $(cat /sys/block/"$(basename "$device")"/loop/dio)" >&2
measure loop-file "$device"
stop_server
echo "== FUSE + loop over a null volume" >&2
start_server --null "$(stat -c %s "$raw")"
measure loop-null "$device"
stop_server

python3 - "$repeat" <<EOF
import statistics, sys
results = {
$(for key in "${!results[@]}"; do printf '    "%s": "%s",\n' "$key" "${results[$key]}"; done)
}
print(f"| workload | target | IOPS (mean ± stdev) | MiB/s | vs raw |")
print("|---|---|---|---|---|")
for workload in ["randwrite 4k QD32", "write 1M QD4"]:
    base = None
    for target in ["raw", "loop-file", "loop-null"]:
        runs = [tuple(map(float, r.split())) for r in results[f"{target}|{workload}"].split(";") if r]
        iops = [r[0] for r in runs]; mib = [r[1] for r in runs]
        mean = statistics.mean(iops); dev = statistics.stdev(iops) if len(iops) > 1 else 0
        base = base or mean
        print(f"| {workload} | {target} | {mean:,.0f} ± {dev:,.0f} | {statistics.mean(mib):,.1f} | {mean / base:.2f}× |")
EOF
