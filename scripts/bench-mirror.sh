#!/usr/bin/env bash
# What the MIRROR engine costs, against nbdkit serving a plain file, in one run on one machine:
#
#   baseline   nbdkit file FILE cache=none           (an NBD server and a file, no replication)
#   mirror-1   a 1-node MIRROR resource              (ferrite-mirrord: NBD, metadata, activity log)
#   mirror-2   a 2-node protocol C MIRROR resource   (two ferrite-mirrord over loopback TCP)
#
# each over a 1 GiB file (usable size; MIRROR's backing files add its metadata) in one
# directory, driven by fio's nbd engine over each server's unix socket. Five jobs: sequential
# write 1M QD16, random write 4k QD32, random write 4k QD1 (latency), random read 4k QD32,
# sequential read 1M QD16. Every job runs REPEAT times per target, the targets interleaved
# (job 1 on each target, then job 2 on each, ..., then the next repetition), and the table shows
# the median of the repetitions with its ratio to the baseline of the same run.
#
# Before each repetition of the QD1 job, the loopback round trip of this moment: two Python
# processes exchanging 24 bytes over TCP with TCP_NODELAY, 2,000 times (an upper bound: the
# interpreter's own time is in it). The QD1 target is the baseline's p50 plus one such round
# trip plus 15 µs, judged with the medians of the same run.
#
# Then, on the 2-member resource (skipped with FIO_ONLY=1):
#   resync   the second member's backing file replaced by an empty one: the time to a full
#            resync of the volume (REPEAT times; the median rate), with c-max-rate at
#            RESYNC_RATE_KIB (default 4194304, DRBD's highest; DRBD's default is 102400);
#   stall    kill -9 of the Secondary during 4k random writes at QD1: the longest completion of
#            the run, which is the time from the kill to writes flowing again (REPEAT times);
#   idle     two daemons with IDLE_VOLUMES (default 100) idle 1 GiB volumes replicated between
#            them, on sparse files (NBD exports, no block devices): one daemon's resident
#            memory and CPU.
#
#   scripts/bench-mirror.sh                     # 3 repetitions of 5 s (+1 s ramp) per job
#   RUNTIME=10 REPEAT=5 scripts/bench-mirror.sh
#   KEEP=1 scripts/bench-mirror.sh              # keep the files, logs and fio's JSON
#   FIO_ONLY=1 JOBS=seqread scripts/bench-mirror.sh              # only the jobs matching a regex
#   MIRRORD_ARGS='--worker-threads 2' scripts/bench-mirror.sh     # extra `ferrite-mirrord run` flags
#   IDLE_ONLY=1 IDLE_VOLUMES=200 scripts/bench-mirror.sh          # only the idle measurement
#
# BENCH_DIR (default target/bench-mirror) holds the files; CARGO_TARGET_DIR is honoured. Needs
# fio, nbdkit and python3 (scripts/setup.sh installs them). Every process it starts is stopped by
# its PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=${RUNTIME:-5}
ramp=${RAMP:-1}
repeat=${REPEAT:-3}
size_mib=${SIZE_MIB:-1024}
target_dir=${CARGO_TARGET_DIR:-target}
bench_dir=${BENCH_DIR:-$target_dir/bench-mirror}
# MIRROR's metadata (superblock, activity log, 7 bitmaps) for 1 GiB is well under this.
metadata_mib=16

for tool in fio nbdkit python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 1; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "this fio has no nbd engine" >&2; exit 1; }

log() { printf '[bench-mirror %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "cargo build --release -p ferrite-mirror --bin ferrite-mirrord"
CARGO_INCREMENTAL=0 cargo build --release -q -p ferrite-mirror --bin ferrite-mirrord >&2
mirrord=$target_dir/release/ferrite-mirrord

mkdir -p "$bench_dir"
bench_dir=$(cd "$bench_dir" && pwd)
rm -rf "${bench_dir:?}"/*
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then rm -rf "${bench_dir:?}"/*; fi
}
trap cleanup EXIT

# The data area of every file is written once before anything is measured, so that no target
# pays for allocating blocks or converting unwritten extents, and reads read real blocks.
prepare_file() { # PATH EXTRA_MIB
    truncate -s $(((size_mib + $2) * 1024 * 1024)) "$1"
    fio --name=fill --filename="$1" --rw=write --bs=1M --iodepth=8 --ioengine=libaio --direct=1 \
        --size="${size_mib}M" --output=/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# resource_file STATE_DIR NAME NODE_ID PORT BACKING [PEER_ID PEER_PORT]: the resource's JSON
# file (config.rs ResourceConfig), read by the daemon when it starts.
resource_file() {
    mkdir -p "$1/resources"
    python3 - "$@" <<'EOF2'
import json, os, sys
state, name, node_id, port, backing = sys.argv[1:6]
peers = []
if len(sys.argv) > 6:
    peer_id, peer_port = sys.argv[6:8]
    peers.append({"node_name": f"node{peer_id}", "node_id": int(peer_id),
                  "address": f"127.0.0.1:{peer_port}", "diskless": False})
config = {
    "name": name, "node_name": f"node{node_id}", "node_id": int(node_id),
    "listen": f"127.0.0.1:{port}", "secret": "bench-secret", "peers": peers,
    "volumes": [{"number": 0, "usable_bytes": int(os.environ["USABLE_BYTES"]),
                 "backing": backing, "new_volume": True}],
    # Two members: LINSTOR sets no quorum, and neither does this.
    "options": {"quorum": "off"},
}
with open(f"{state}/resources/{name}.json", "w") as f:
    json.dump(config, f, indent=2)
EOF2
}
export USABLE_BYTES=$((size_mib * 1024 * 1024))

start_mirrord() { # STATE_DIR [LOG_LEVEL]
    # shellcheck disable=SC2086
    "$mirrord" --state-dir "$1" run --device-root "$1/dev" --log "${2:-warn}" ${MIRRORD_ARGS:-} \
        >"$1.log" 2>&1 &
    pids+=($!)
}

# wait_in_sync STATE_DIR RESOURCE PEERS [SECONDS]: until the volume is UpToDate and every peer
# connected and UpToDate (20 s unless said). A daemon still starting answers nothing, which the
# check reads as not yet.
wait_in_sync() { # STATE_DIR RESOURCE PEERS [SECONDS]
    for _ in $(seq $((${4:-20} * 10))); do
        if "$mirrord" --state-dir "$1" status "$2" --json 2>/dev/null | python3 -c '
import json, sys
peers = int(sys.argv[1])
status = json.load(sys.stdin)[0]["status"]
ok = status["volumes"][0]["disk"] == "UpToDate" and sum(
    1 for p in status["peers"]
    if p["connection"] == "Connected" and p["volumes"][0]["peer_disk"] == "UpToDate") == peers
sys.exit(0 if ok else 1)' "$3" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "$2 in $1 did not come up:"; cat "$1.log" >&2; exit 1
}

# measure_idle: two daemons with IDLE_VOLUMES idle replicated volumes; one daemon's memory and
# CPU over 10 s, written to idle.txt.
measure_idle() {
    idle_volumes=${IDLE_VOLUMES:-100}
    log "idle: two daemons with $idle_volumes idle replicated 1 GiB volumes"
    idle_dir=$bench_dir/idle
    mkdir -p "$idle_dir/files"
    # Every port chosen before any daemon binds one: a port the kernel hands out twice would
    # give two resources one address.
    declare -A idle_ports=()
    unique_port() { # sets $picked (not a subshell: the set of ports taken must persist)
        picked=$(free_port)
        while [ -n "${idle_ports[$picked]:-}" ]; do picked=$(free_port); done
        idle_ports[$picked]=1
    }
    for i in $(seq "$idle_volumes"); do
        unique_port
        port_a=$picked
        unique_port
        port_b=$picked
        for side in a b; do
            truncate -s $(((1024 + metadata_mib) * 1024 * 1024)) "$idle_dir/files/v$i$side.img"
        done
        USABLE_BYTES=$((1024 * 1024 * 1024)) resource_file "$idle_dir/a" "idle$i" 0 "$port_a" \
            "$idle_dir/files/v${i}a.img" 1 "$port_b"
        USABLE_BYTES=$((1024 * 1024 * 1024)) resource_file "$idle_dir/b" "idle$i" 1 "$port_b" \
            "$idle_dir/files/v${i}b.img" 0 "$port_a"
    done
    for side in a b; do
        "$mirrord" --state-dir "$idle_dir/$side" run --no-block-devices --log warn \
            >"$idle_dir/$side.log" 2>&1 &
        pids+=($!)
    done
    idle_pid=${pids[-2]}
    for i in $(seq "$idle_volumes"); do wait_in_sync "$idle_dir/a" "idle$i" 1 600; done
    sleep 10
    {
        grep -E '^(VmRSS|VmHWM|Threads)' "/proc/$idle_pid/status" | tr -s ' \t' ' ' | tr '\n' ' '
        echo "CPU over 10 s idle: $(python3 - "$idle_pid" <<'EOF2'
import os, sys, time
pid = sys.argv[1]
def ticks():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
t0 = ticks(); time.sleep(10); t1 = ticks()
print(f"{(t1 - t0) / os.sysconf('SC_CLK_TCK') / 10 * 100:.1f} % of a core")
EOF2
)"
    } >"$bench_dir/idle.txt"
}

if [ -n "${IDLE_ONLY:-}" ]; then
    measure_idle
    echo "$(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "idle daemon: $(cat "$bench_dir/idle.txt")"
    exit 0
fi

log "files: ${size_mib} MiB each in $bench_dir (prefilled)"
prepare_file "$bench_dir/baseline.img" 0
prepare_file "$bench_dir/mirror1.img" "$metadata_mib"
prepare_file "$bench_dir/mirror2a.img" "$metadata_mib"
prepare_file "$bench_dir/mirror2b.img" "$metadata_mib"

log "baseline: nbdkit file cache=none"
nbdkit --foreground -U "$bench_dir/nbdkit.sock" file "$bench_dir/baseline.img" cache=none \
    >"$bench_dir/nbdkit.log" 2>&1 &
pids+=($!)

log "mirror-1: one member"
resource_file "$bench_dir/m1" r1 0 "$(free_port)" "$bench_dir/mirror1.img"
start_mirrord "$bench_dir/m1"
wait_in_sync "$bench_dir/m1" r1 0

log "mirror-2: two members, protocol C over loopback"
port_a=$(free_port)
port_b=$(free_port)
resource_file "$bench_dir/m2a" r2 0 "$port_a" "$bench_dir/mirror2a.img" 1 "$port_b"
resource_file "$bench_dir/m2b" r2 1 "$port_b" "$bench_dir/mirror2b.img" 0 "$port_a"
start_mirrord "$bench_dir/m2a"
start_mirrord "$bench_dir/m2b"
wait_in_sync "$bench_dir/m2a" r2 1
wait_in_sync "$bench_dir/m2b" r2 1
for _ in $(seq 50); do [ -S "$bench_dir/nbdkit.sock" ] && break; sleep 0.1; done

declare -A sockets=(
    [baseline]=$bench_dir/nbdkit.sock
    [mirror-1]=$bench_dir/m1/run/r1/0.nbd
    [mirror-2]=$bench_dir/m2a/run/r2/0.nbd
)
targets=(baseline mirror-1 mirror-2)
jobs=(
    "seqwrite-1M-QD16 --rw=write --bs=1M --iodepth=16"
    "randwrite-4k-QD32 --rw=randwrite --bs=4k --iodepth=32"
    "randwrite-4k-QD1 --rw=randwrite --bs=4k --iodepth=1"
    "randread-4k-QD32 --rw=randread --bs=4k --iodepth=32"
    "seqread-1M-QD16 --rw=read --bs=1M --iodepth=16"
)
# measure_rtt: the p50 of 2,000 loopback TCP round trips of 24 bytes, in µs.
measure_rtt() {
    python3 - <<'EOF2'
import os, socket, time
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
pid = os.fork()
if pid == 0:
    peer, _ = server.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (data := peer.recv(24)):
        peer.sendall(data)
    os._exit(0)
client = socket.create_connection(server.getsockname())
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for _ in range(2000):
    start = time.perf_counter_ns()
    client.sendall(b"x" * 24)
    got = 0
    while got < 24:
        got += len(client.recv(24 - got))
    times.append((time.perf_counter_ns() - start) / 1000)
client.close()
os.waitpid(pid, 0)
print(sorted(times)[len(times) // 2])
EOF2
}

mkdir -p "$bench_dir/fio"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq "$repeat"); do
    for job in "${jobs[@]}"; do
        name=${job%% *}
        [[ $name =~ ${JOBS:-.} ]] || continue
        if [ "$name" = randwrite-4k-QD1 ]; then
            measure_rtt >"$bench_dir/fio/rtt.$rep.txt"
        fi
        for target in "${targets[@]}"; do
            log "run $rep/$repeat: $name on $target"
            # Each run starts with no dirty pages left by the one before (written through the
            # page cache, they would slow whichever target comes next).
            sync
            # shellcheck disable=SC2086
            fio --name="$name" ${job#* } --ioengine=nbd \
                --uri="nbd+unix:///?socket=${sockets[$target]}" --size="${size_mib}M" \
                --numjobs=1 --time_based --runtime="$runtime" --ramp_time="$ramp" \
                --output-format=json >"$bench_dir/fio/$target.$name.$rep.json"
        done
    done
done

# --- resync, stall, idle ------------------------------------------------------------------
if [ -z "${FIO_ONLY:-}" ]; then
    # The Secondary of mirror-2 is the last daemon started.
    m2b_pid=${pids[-1]}
    stop_m2b() { # SIGNAL
        kill "-$1" "$m2b_pid" 2>/dev/null || true
        wait "$m2b_pid" 2>/dev/null || true
    }
    restart_m2b() { # [LOG_LEVEL]
        start_mirrord "$bench_dir/m2b" "${1:-warn}"
        m2b_pid=${pids[-1]}
    }
    : >"$bench_dir/resync.txt"
    for rep in $(seq "$repeat"); do
        log "resync $rep/$repeat: the Secondary's disk replaced by an empty one"
        stop_m2b TERM
        rm -f "$bench_dir/mirror2b.img"
        truncate -s $(((size_mib + metadata_mib) * 1024 * 1024)) "$bench_dir/mirror2b.img"
        # The new disk is not "new": the resource holds data, so it gets everything. The resync
        # rate is capped by c-max-rate (100 MiB/s unless set, as in DRBD): set to DRBD's
        # highest value, RESYNC_RATE_KIB unless given, so that the engine's own rate shows.
        python3 - "$bench_dir/m2b/resources/r2.json" "${RESYNC_RATE_KIB:-4194304}" <<'EOF2'
import json, sys
path, rate = sys.argv[1], int(sys.argv[2])
config = json.load(open(path))
config["volumes"][0]["new_volume"] = False
config["options"]["c_max_rate_kib"] = rate
json.dump(config, open(path, "w"), indent=2)
EOF2
        start=$(date +%s.%N)
        restart_m2b info
        wait_in_sync "$bench_dir/m2b" r2 1 600
        end=$(date +%s.%N)
        # The engine's rate, from its log ("resync starts" to "resync finished", which includes
        # the sync that puts the data on the disk), and the rate from the daemon's start to
        # UpToDate seen by `status` (start-up, connection, this script's polling included).
        python3 - "$bench_dir/m2b.log" "$size_mib" "$start" "$end" >>"$bench_dir/resync.txt" <<'EOF2'
import datetime, re, sys
log, size_mib, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
stamps = {}
for line in open(log):
    for event in ("resync starts", "resync finished"):
        if event in line:
            stamp = re.match(r"(\S+Z)", line).group(1)
            stamps[event] = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
seconds = (stamps["resync finished"] - stamps["resync starts"]).total_seconds()
print(f"{size_mib / seconds:.1f} {size_mib / (end - start):.1f}")
EOF2
        wait_in_sync "$bench_dir/m2a" r2 1
    done
    # What the disk allows a resync: the volume's size written through the page cache and
    # synced, to a new file on the same disk (a resync target does the same).
    : >"$bench_dir/disk.txt"
    for rep in $(seq "$repeat"); do
        log "disk $rep/$repeat: ${size_mib} MiB written and synced to a new file"
        rm -f "$bench_dir/disk.img"
        sync
        start=$(date +%s.%N)
        fio --name=disk --filename="$bench_dir/disk.img" --rw=write --bs=1M --size="${size_mib}M" \
            --ioengine=psync --end_fsync=1 --output=/dev/null
        end=$(date +%s.%N)
        python3 -c "print(f'{$size_mib / ($end - $start):.1f}')" >>"$bench_dir/disk.txt"
        rm -f "$bench_dir/disk.img"
    done
    for rep in $(seq "$repeat"); do
        log "stall $rep/$repeat: kill -9 of the Secondary during random writes at QD1"
        fio --name=stall --rw=randwrite --bs=4k --iodepth=1 --ioengine=nbd \
            --uri="nbd+unix:///?socket=${sockets[mirror-2]}" --size="${size_mib}M" \
            --time_based --runtime=6 --output-format=json >"$bench_dir/fio/stall.$rep.json" &
        fio_pid=$!
        sleep 3
        stop_m2b KILL
        wait "$fio_pid"
        restart_m2b
        wait_in_sync "$bench_dir/m2a" r2 1 600
    done
    measure_idle
fi

echo "$(nproc) CPUs; load average before the runs: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$bench_dir/fio" "$repeat" "${JOBS:-.}" <<'EOF'
import json, re, statistics, sys
from pathlib import Path

directory, repeat, wanted = Path(sys.argv[1]), int(sys.argv[2]), re.compile(sys.argv[3])
targets = ["baseline", "mirror-1", "mirror-2"]
jobs = ["seqwrite-1M-QD16", "randwrite-4k-QD32", "randwrite-4k-QD1", "randread-4k-QD32",
        "seqread-1M-QD16"]

def figures(path):
    text = path.read_text()
    # fio's nbd engine prints "fio: connected to NBD server" before the JSON.
    job = json.loads(text[text.index("{"):])["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {
        "iops": side["iops"],
        "mib": side["bw_bytes"] / (1 << 20),
        "p50": pct.get("50.000000", 0) / 1000,
        "p99": pct.get("99.000000", 0) / 1000,
    }

print(f"median of {repeat} interleaved runs per job and target; ratio = target / baseline "
      "(for latency: higher is slower)\n")
print("| job | target | MiB/s | IOPS | p50 µs | p99 µs | IOPS vs baseline | p50 vs baseline |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
p50 = {}
for job in (job for job in jobs if wanted.search(job)):
    base = None
    for target in targets:
        runs = [figures(directory / f"{target}.{job}.{rep}.json") for rep in range(1, repeat + 1)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        base = base or med
        print(f"| {job} | {target} | {med['mib']:,.1f} | {med['iops']:,.0f} | {med['p50']:,.0f} "
              f"| {med['p99']:,.0f} | {med['iops'] / base['iops']:.2f}× "
              f"| {med['p50'] / base['p50'] if base['p50'] else 0:.2f}× |")
        if job == "randwrite-4k-QD1":
            p50[target] = med["p50"]

rtts = [float((directory / f"rtt.{rep}.txt").read_text())
        for rep in range(1, repeat + 1) if (directory / f"rtt.{rep}.txt").exists()]
if rtts and "mirror-2" in p50:
    rtt = statistics.median(rtts)
    allowed = p50["baseline"] + rtt + 15
    verdict = "met" if p50["mirror-2"] <= allowed else "not met"
    print(f"\nQD1: loopback round trip p50 {rtt:,.1f} µs (runs: {', '.join(f'{v:,.1f}' for v in rtts)}); "
          f"2 replicas {p50['mirror-2']:,.0f} µs against baseline {p50['baseline']:,.0f} + round trip "
          f"+ 15 = {allowed:,.0f} µs: {verdict}")

def median_line(values, unit):
    return f"median {statistics.median(values):,.1f} {unit} (runs: {', '.join(f'{v:,.1f}' for v in values)})"

bench = directory.parent
if (bench / "resync.txt").exists():
    lines = [line.split() for line in (bench / "resync.txt").read_text().splitlines()]
    engine = [float(fields[0]) for fields in lines]
    whole = [float(fields[1]) for fields in lines]
    disk = [float(line) for line in (bench / "disk.txt").read_text().split()]
    print(f"\nfull resync of the volume over loopback, from its start to the target's data synced: "
          f"{median_line(engine, 'MiB/s')}")
    print(f"  from the target daemon's start to UpToDate in `status`: {median_line(whole, 'MiB/s')}")
    print(f"  baseline, the same size written and synced to a file on this disk: {median_line(disk, 'MiB/s')}")
    stalls = []
    for rep in range(1, repeat + 1):
        text = (directory / f"stall.{rep}.json").read_text()
        job = json.loads(text[text.index("{"):])["jobs"][0]
        stalls.append(job["write"]["clat_ns"]["max"] / 1e6)
    print(f"kill -9 of the Secondary during 4k QD1 writes, longest write: {median_line(stalls, 'ms')}")
    print(f"idle daemon: {(bench / 'idle.txt').read_text().strip()}")
EOF
