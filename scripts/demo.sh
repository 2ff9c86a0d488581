#!/usr/bin/env bash
# Starts a local 4-node Ferrite cluster and runs the article's tutorial on it with the `ferrite`
# CLI, then leaves the cluster running.
#
#   scripts/demo.sh          set up, build, start the cluster, run the tutorial
#   scripts/demo.sh stop     stop the cluster and remove everything it made
#   scripts/demo.sh status   show whether it runs
#
# One controller (127.0.0.1:3370) and four satellites (node1..node4 on 127.0.0.11..14:3366) run
# as separate processes; each satellite starts its node's ferrite-mirrord, which replicates the
# volumes (the MIRROR engine) and gives each volume an NBD export and a block device under
# <demo dir>/<node>/dev. Every node has a FILE_THIN storage pool in a directory under the demo
# directory (FERRITE_DEMO_DIR, default /tmp/ferrite-demo); backing volumes are sparse files
# attached as loop devices, block devices are FUSE files behind loop devices, so it needs root.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Absolute: pool directories and the backup are paths the controller and satellites open.
demo_dir="$(realpath -m "${FERRITE_DEMO_DIR:-/tmp/ferrite-demo}")"
bin_dir="$repo/target/release"
controller_address=127.0.0.1:3370
nodes=(node1 node2 node3 node4)
declare -A node_ip=([node1]=127.0.0.11 [node2]=127.0.0.12 [node3]=127.0.0.13 [node4]=127.0.0.14)

log() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# Runs a tutorial step: prints the command as a user would type it, then runs it.
step() {
    printf '\n\033[36m$ %s\033[0m\n' "$*"
    "$@"
}

ferrite() { "$bin_dir/ferrite" --controllers "$controller_address" "$@"; }

stop() {
    # The controller and the satellites first: a satellite starts its node's MIRROR daemon again
    # when it finds it gone, so the daemons are ended only once no satellite runs.
    if [ -f "$demo_dir/pids" ]; then
        while read -r name pid; do
            if kill -0 "$pid" 2>/dev/null; then
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
                echo "stopped $name (pid $pid)"
            fi
        done <"$demo_dir/pids"
    fi
    # Unmount what the tutorial mounted, then end the MIRROR daemons (each runs in a session of
    # its own and outlives its satellite by design).
    if [ -d "$demo_dir" ]; then
        for mnt in "$demo_dir"/mnt-*; do
            if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" && echo "unmounted $mnt"; fi
        done
        for lock in "$demo_dir"/node*/state/mirror/mirrord.lock; do
            [ -f "$lock" ] || continue
            pid=$(cat "$lock" 2>/dev/null || true)
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
                echo "stopped ferrite-mirrord (pid $pid)"
            fi
        done
    fi
    # A daemon that had to be killed leaves its FUSE file system mounted: unmount whatever is
    # still mounted under the demo directory, deepest first.
    if [ -d "$demo_dir" ]; then
        { findmnt -rn -o TARGET | grep "^$demo_dir/" || true; } | sort -r | while read -r target; do
            umount -l "$target" && echo "unmounted $target"
        done
    fi
    # Detach only the loop devices backed by files of this demo; others are not ours.
    if [ -d "$demo_dir" ] && command -v losetup >/dev/null; then
        losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null |
            while read -r device file; do
                case "$file" in "$demo_dir"/*) losetup --detach "$device" && echo "detached $device" ;; esac
            done
    fi
    rm -rf "$demo_dir"
}

status() {
    [ -f "$demo_dir/pids" ] || { echo "not running"; return 1; }
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
    done <"$demo_dir/pids"
}

# Starts a process in the background, logging to $demo_dir/<name>.log.
launch() {
    local name="$1"; shift
    setsid "$@" >"$demo_dir/$name.log" 2>&1 </dev/null &
    echo "$name $!" >>"$demo_dir/pids"
}

wait_for() {
    local what="$1"; shift
    for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not come up; see the logs in $demo_dir"
}

# The state of my_ssd_res as the controller reports it, for the waits below.
resource_state() {
    ferrite -m resource list -r my_ssd_res 2>/dev/null | python3 -c "$1" "${@:2}"
}
replicas_up_to_date() {
    resource_state '
import json, sys
rs = [r for r in json.load(sys.stdin)[0] if "DISKLESS" not in r.get("flags", [])]
sys.exit(0 if len(rs) >= 2 and all(v.get("state", {}).get("disk_state") == "UpToDate" for r in rs for v in r["volumes"]) else 1)'
}
up_to_date() {
    resource_state '
import json, sys
r = [r for r in json.load(sys.stdin)[0] if r["node_name"] == sys.argv[1]]
sys.exit(0 if r and all(v.get("state", {}).get("disk_state") == "UpToDate" for v in r[0]["volumes"]) else 1)' "$1"
}
not_in_use() {
    resource_state '
import json, sys
sys.exit(1 if any(r.get("state", {}).get("in_use") for r in json.load(sys.stdin)[0]) else 0)'
}
syncing() {
    resource_state '
import json, sys
r = [r for r in json.load(sys.stdin)[0] if r["node_name"] == sys.argv[1]]
states = [s.get("replication_state") for v in (r[0]["volumes"] if r else []) for s in v.get("state", {}).get("replication_states", {}).values()]
sys.exit(0 if "SyncTarget" in states else 1)' "$1"
}
kept_as_diskless() {
    resource_state '
import json, sys
r = [r for r in json.load(sys.stdin)[0] if r["node_name"] == sys.argv[1]]
sys.exit(0 if r and "TIE_BREAKER" not in r[0].get("flags", []) else 1)' "$1"
}
connected() {
    resource_state '
import json, sys
r = [r for r in json.load(sys.stdin)[0] if r["node_name"] == sys.argv[1]]
c = r[0]["layer_object"].get("drbd", {}).get("connections", {}) if r else {}
sys.exit(0 if c and all(p.get("connected") for p in c.values()) else 1)' "$1"
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root: the satellites attach loop devices"
    log "Installing what is missing"
    "$repo/scripts/setup.sh"
    log "Building (release)"
    (cd "$repo" && cargo build --release --bins --quiet \
        -p ferrite-controller -p ferrite-satellite -p ferrite-mirror -p ferrite-cli)

    if [ -f "$demo_dir/pids" ]; then
        log "Stopping the previous demo"
        stop
    fi
    if curl -fsS "http://$controller_address/health" >/dev/null 2>&1; then
        die "something already answers on $controller_address; stop it first"
    fi
    mkdir -p "$demo_dir"
    : >"$demo_dir/pids"

    log "Starting the controller on $controller_address and four satellites"
    launch controller "$bin_dir/ferrite-controller" --listen "$controller_address" \
        --data-dir "$demo_dir/controller" --config /dev/null
    for node in "${nodes[@]}"; do
        mkdir -p "$demo_dir/$node/pool"
        launch "$node" "$bin_dir/ferrite-satellite" --listen "${node_ip[$node]}:3366" \
            --state-dir "$demo_dir/$node/state" --node-name "$node" --config /dev/null \
            --device-root "$demo_dir/$node/dev"
    done
    wait_for controller curl -fsS "http://$controller_address/health"

    log "The article's tutorial, with ferrite in place of linstor"
    step ferrite node list
    for node in "${nodes[@]}"; do
        step ferrite node create "$node" "${node_ip[$node]}" --node-type combined
    done
    step ferrite node list
    for node in "${nodes[@]}"; do
        step ferrite storage-pool create filethin "$node" pool_ssd "$demo_dir/$node/pool"
    done
    step ferrite storage-pool list
    step ferrite resource-group create my_ssd_group --storage-pool pool_ssd --place-count 2
    step ferrite volume-group create my_ssd_group
    step ferrite resource-group spawn-resources my_ssd_group my_ssd_res 2G
    step ferrite resource list
    step ferrite volume list
    step ferrite resource-definition list

    # The placer chose two nodes for the disks and a third for the diskless tiebreaker.
    mapfile -t placed < <(ferrite -m resource list -r my_ssd_res | python3 -c '
import json, sys
rs = json.load(sys.stdin)[0]
print("\n".join(sorted(r["node_name"] for r in rs if "DISKLESS" not in r.get("flags", []))))')
    tiebreaker=$(ferrite -m resource list -r my_ssd_res | python3 -c '
import json, sys
rs = json.load(sys.stdin)[0]
print(next((r["node_name"] for r in rs if "TIE_BREAKER" in r.get("flags", [])), ""))')
    [ -n "$tiebreaker" ] || die "no tiebreaker was placed; see ferrite resource list"
    spare=""
    for node in "${nodes[@]}"; do
        [[ " ${placed[*]} $tiebreaker " == *" $node "* ]] || spare="$node"
    done
    wait_for "both replicas UpToDate" replicas_up_to_date
    step ferrite resource list
    step ferrite volume list

    log "Real data: a file system made and written on the diskless tiebreaker $tiebreaker"
    device_of() { echo "$demo_dir/$1/dev/my_ssd_res/0"; }
    mnt="$demo_dir/mnt-data"
    mkdir -p "$mnt"
    wait_for "the block device on $tiebreaker" test -b "$(readlink -f "$(device_of "$tiebreaker")")"
    step mkfs.ext4 -q -F "$(device_of "$tiebreaker")"
    step mount "$(device_of "$tiebreaker")" "$mnt"
    echo "Ferrite kept this file safe ($(date -u +%FT%TZ))" >"$mnt/hello.txt"
    step cat "$mnt/hello.txt"
    # Used, the tiebreaker stays as a diskless resource of its own, as LINSTOR keeps it.
    wait_for "$tiebreaker to be kept as a diskless resource" kept_as_diskless "$tiebreaker"
    step ferrite resource list
    step umount "$mnt"

    log "Mounted and read on ${placed[0]}, one of the replicas"
    wait_for "the tiebreaker to let go" not_in_use
    step mount "$(device_of "${placed[0]}")" "$mnt"
    step cat "$mnt/hello.txt"
    step umount "$mnt"

    log "Made available on $spare (diskless) and read there"
    wait_for "${placed[0]} to let go" not_in_use
    step ferrite resource make-available "$spare" my_ssd_res
    wait_for "the block device on $spare" test -b "$(readlink -f "$(device_of "$spare")")"
    wait_for "$spare to connect" connected "$spare"
    step mount "$(device_of "$spare")" "$mnt"
    step cat "$mnt/hello.txt"
    step umount "$mnt"
    step ferrite resource list

    log "$tiebreaker becomes a replica (a full sync from the others), ${placed[0]} gives up its replica"
    wait_for "$spare to let go" not_in_use
    step ferrite resource toggle-disk "$tiebreaker" my_ssd_res --storage-pool pool_ssd
    # The sync shown while it runs (a few seconds; shown after it if it was quicker).
    for _ in $(seq 100); do syncing "$tiebreaker" && break; sleep 0.1; done
    step ferrite volume list
    wait_for "$tiebreaker to finish its sync" up_to_date "$tiebreaker"
    step ferrite volume list
    step ferrite resource delete "${placed[0]}" my_ssd_res
    step ferrite resource list

    log "The file, read again on ${placed[1]}"
    wait_for "${placed[1]} to connect" connected "${placed[1]}"
    step mount "$(device_of "${placed[1]}")" "$mnt"
    step cat "$mnt/hello.txt"
    step umount "$mnt"

    log "Safety: a backup of the controller's store, and the nodes' orphans (none)"
    step ferrite controller backup "$demo_dir/backup-1.db"
    step ferrite node orphans list

    cat <<EOF

The cluster keeps running. Use it with:

    export PATH="$bin_dir:\$PATH"
    ferrite node list                 # the four nodes
    ferrite resource list             # my_ssd_res, replicated by the MIRROR engine
    ferrite volume list               # its block devices and replication states
    mount $demo_dir/${placed[1]}/dev/my_ssd_res/0 /mnt    # the volume, on ${placed[1]}
    ferrite-mirrord --state-dir $demo_dir/${placed[1]}/state/mirror status -v
    ferrite rg spawn my_ssd_group web 1G
    curl -s http://$controller_address/v1/view/resources | python3 -m json.tool

Logs and state are in $demo_dir. Stop it and remove everything it made with:

    $repo/scripts/demo.sh stop
EOF
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
