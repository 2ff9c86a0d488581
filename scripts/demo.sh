#!/usr/bin/env bash
# Starts a local 4-node Ferrite cluster and runs the article's tutorial on it with the `ferrite`
# CLI, then leaves the cluster running.
#
#   scripts/demo.sh          set up, build, start the cluster, run the tutorial
#   scripts/demo.sh stop     stop the cluster and remove everything it made
#   scripts/demo.sh status   show whether it runs
#
# One controller (127.0.0.1:3370) and four satellites (node1..node4 on 127.0.0.11..14:3366) run
# as separate processes. Every node has a FILE_THIN storage pool in a directory under the demo
# directory (FERRITE_DEMO_DIR, default /tmp/ferrite-demo); volumes are sparse files attached as
# loop devices, so the satellites need root.
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
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "$what did not come up; see the logs in $demo_dir"
}

start() {
    [ "$(id -u)" -eq 0 ] || die "run as root: the satellites attach loop devices"
    log "Installing what is missing"
    "$repo/scripts/setup.sh"
    log "Building (release)"
    (cd "$repo" && cargo build --release --bins --quiet \
        -p ferrite-controller -p ferrite-satellite -p ferrite-cli)

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
            --state-dir "$demo_dir/$node/state" --node-name "$node" --config /dev/null
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

    # The placer chose two nodes; the others can use the volume disklessly.
    mapfile -t placed < <(ferrite -m resource list -r my_ssd_res |
        python3 -c 'import json,sys; print("\n".join(sorted(r["node_name"] for r in json.load(sys.stdin)[0])))')
    spare=()
    for node in "${nodes[@]}"; do
        [[ " ${placed[*]} " == *" $node "* ]] || spare+=("$node")
    done
    step ferrite resource create "${spare[-1]}" my_ssd_res --diskless
    step ferrite resource list
    # Make the diskless node a replica, then move the first replica's disk away.
    step ferrite resource toggle-disk "${spare[-1]}" my_ssd_res --storage-pool pool_ssd
    step ferrite resource toggle-disk "${placed[0]}" my_ssd_res --diskless
    step ferrite resource list
    step ferrite volume list
    step ferrite resource delete "${placed[0]}" my_ssd_res
    step ferrite resource list

    log "Safety: a backup of the controller's store, and the nodes' orphans (none)"
    step ferrite controller backup "$demo_dir/backup-1.db"
    step ferrite node orphans list

    cat <<EOF

The cluster keeps running. Use it with:

    export PATH="$bin_dir:\$PATH"
    ferrite node list                 # the four nodes
    ferrite resource list             # my_ssd_res on two nodes
    ferrite volume list               # the loop devices backing it
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
