//! Fault tests: real `ferrite-mirrord` processes on real files and sockets, a writer that
//! keeps writes in flight through NBD and logs each one only once it is acknowledged, and a
//! fault in the middle — a daemon killed with SIGKILL, a restart during a resync, a network
//! partition, a peer that speaks garbage. At the end every acknowledged write must be readable
//! (its newest version) from every member that survived or came back, and no split brain may
//! have been reported.
//!
//! The harness is in `support/`. Each test waits on states the daemons report through their
//! control sockets, with deadlines, never on a guessed sleep.

mod ports;
mod support;

use std::sync::Arc;
use std::time::Duration;

use ferrite_mirror::peer;
use ferrite_mirror::wire::{self, Hello, Kind};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USABLE: u64 = 32 << 20;
const BLOCKS: u64 = USABLE / BLOCK as u64;
const DEPTH: usize = 8;
/// The resync rate of the tests that kill a member mid-resync (`c-max-rate`).
const RATE_KIB: u64 = 8 * 1024;
/// Blocks in one activity-log extent (4 MiB).
const EXTENT_BLOCKS: u64 = ferrite_mirror::activity_log::AL_EXTENT_SIZE / BLOCK as u64;

/// NBD's EIO and EPERM (what a member without quorum and a member that may not become
/// Primary answer).
const NBD_EIO: u32 = 5;
const NBD_EPERM: u32 = 1;

async fn assert_data(log: &AckLog, node: &Node, what: &str) {
    let problems = log.verify(&node.nbd_socket()).await;
    assert!(
        problems.is_empty(),
        "{what}: node{} does not hold every acknowledged write:\n{}\nlog:\n{}",
        node.node_id,
        problems.join("\n"),
        node.log_tail(60)
    );
    println!(
        "{what}: node{} holds all {} acknowledged writes ({} failed, as they may)",
        node.node_id,
        log.acked_count(),
        log.failed_count()
    );
}

/// Starts every node and waits until they all are connected and UpToDate.
async fn start_in_sync(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        node.start().await;
    }
    let peers = nodes.len() - 1;
    for node in nodes.iter() {
        node.wait("every member connected and UpToDate", SETTLE, |s| {
            all_in_sync(s, peers)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_secondary_comes_back_and_resyncs_what_it_missed() {
    let layout = Layout::loopback(2, 0, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    wait_acks(&log, 0, 300, SETTLE).await;

    nodes[1].kill9();
    // The Primary goes on alone, recording what the Secondary misses.
    nodes[0]
        .wait("the Secondary is gone", SETTLE, |s| {
            peer(s, 1).connection != "Connected"
        })
        .await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 500, SETTLE).await;
    let alone = nodes[0].status().await.unwrap();
    assert_eq!(alone.role, "Primary");
    assert!(
        peer(&alone, 1).volumes[0].out_of_sync_kib > 0,
        "writes the Secondary missed are tracked: {alone:#?}"
    );

    // Back: it resyncs under the same write load.
    nodes[1].start().await;
    for node in &nodes {
        node.wait("resynced", SETTLE, |s| all_in_sync(s, 1)).await;
    }
    let acked = log.acked_count();
    wait_acks(&log, acked, 200, SETTLE).await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "no write failed: {report:?}");
    assert!(report.connection_lost.is_none(), "{report:?}");

    // The Primary closed: it demotes; the Secondary's own export shows the log's data.
    nodes[0]
        .wait("the Primary demoted", SETTLE, |s| {
            s.role == "Secondary" && all_in_sync(s, 1)
        })
        .await;
    assert_data(&log, &nodes[1], "the resynced Secondary").await;
    assert_data(&log, &nodes[0], "the Primary").await;
    for node in &nodes {
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_and_comes_back_as_sync_target() {
    let layout = Layout::loopback(2, 0, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    wait_acks(&log, 0, 300, SETTLE).await;

    let mark = nodes[0].log_mark();
    nodes[0].kill9();
    let report = writer.stop().await;
    assert!(report.connection_lost.is_some(), "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[1]
        .wait("the Primary is gone", SETTLE, |s| {
            peer(s, 0).connection != "Connected" && peer(s, 0).role != "Primary"
        })
        .await;
    // Protocol C: every acknowledged write is on the survivor.
    assert_data(&log, &nodes[1], "the survivor, before it writes").await;

    // The survivor is promoted by its first write and goes on.
    let writer = Writer::start(&nodes[1].nbd_socket(), log.clone(), 1, DEPTH, BLOCKS).await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;
    assert_eq!(nodes[1].status().await.unwrap().role, "Primary");

    // The old Primary returns: it crashed as Primary, so its hot extents are suspect, and it
    // resyncs from the survivor under load.
    nodes[0].start().await;
    nodes[0]
        .wait_log(
            mark,
            &["crashed as Primary", "hot extents are out of sync"],
            SETTLE,
        )
        .await;
    nodes[0]
        .wait_log(mark, &["handshake", "outcome=SyncTarget"], SETTLE)
        .await;
    for node in &nodes {
        node.wait("resynced", SETTLE, |s| all_in_sync(s, 1)).await;
    }
    let acked = log.acked_count();
    wait_acks(&log, acked, 200, SETTLE).await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[1]
        .wait("the new Primary demoted", SETTLE, |s| {
            s.role == "Secondary" && all_in_sync(s, 1)
        })
        .await;
    assert_data(&log, &nodes[0], "the old Primary after its resync").await;
    assert_data(&log, &nodes[1], "the new Primary").await;
    // The writes in flight at the kill that reached only the old Primary's disk were in its
    // hot extents: taken back from the survivor, not kept.
    let differing = differing_blocks(&layout.backing(0), &layout.backing(1), USABLE as usize);
    assert!(differing.is_empty(), "blocks {differing:?} differ");
    for node in &nodes {
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_primary_returning_to_an_unchanged_peer_takes_its_hot_extents_back() {
    // The crashed-primary rule itself: nobody wrote after the crash, so both members are on
    // the same generation, and the one that crashed as Primary (whose disk may hold writes
    // that were never acknowledged, in its hot extents) is the sync target.
    let layout = Layout::loopback(2, 0, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    wait_acks(&log, 0, 300, SETTLE).await;
    let mark = nodes[0].log_mark();
    nodes[0].kill9();
    writer.stop().await;
    nodes[1]
        .wait("the Primary is gone", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    nodes[0].start().await;
    nodes[0]
        .wait_log(
            mark,
            &[
                "handshake",
                "outcome=SyncTarget",
                "rule=\"crashed-primary\"",
            ],
            SETTLE,
        )
        .await;
    for node in &nodes {
        node.wait("resynced", SETTLE, |s| all_in_sync(s, 1)).await;
    }
    assert_data(&log, &nodes[0], "the crashed Primary after its resync").await;
    assert_data(&log, &nodes[1], "the survivor").await;
}

/// The blocks the writers of [`writing_without_node2`] write: half of the first 4 MiB extent
/// of the activity log, so that most of the volume is unchanged while node2 is away.
const SPAN: u64 = EXTENT_BLOCKS / 2;

/// Three disks in sync; node0 writes to [`SPAN`] blocks, node2 is killed under the load
/// (writes in flight fail toward it), and node0 writes on without it for 300 more
/// acknowledgements. Returns the layout (its directory lives as long as it does), the nodes,
/// the log of acknowledged writes and node0's writer, still writing.
async fn writing_without_node2() -> (Layout, Vec<Node>, Arc<AckLog>, Writer) {
    let layout = Layout::loopback(3, 0, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, SPAN).await;
    wait_acks(&log, 0, 300, SETTLE).await;

    nodes[2].kill9();
    nodes[0]
        .wait("node2 is gone", SETTLE, |s| {
            peer(s, 2).connection != "Connected"
        })
        .await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;
    (layout, nodes, log, writer)
}

/// Three disks: node0 writes, node2 is killed under the load (writes in flight fail toward it),
/// node0 writes on without it, then node0 is killed too. node2 comes back and meets node1
/// alone: node1, a Secondary, recorded in its own bitmap what node2 missed (the writes node0
/// flagged as written without it, and those that failed toward it), as DRBD 9's Secondaries
/// do, so node2 gets a bitmap resync of the blocks changed meanwhile — not a full one — and
/// then holds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_back_while_the_primary_is_gone_gets_only_what_it_missed_from_a_secondary() {
    let (_layout, mut nodes, log, writer) = writing_without_node2().await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    let tracked = nodes[1]
        .wait("the Secondary tracks what node2 misses", SETTLE, |s| {
            peer(s, 2).volumes[0].out_of_sync_kib > 0
        })
        .await;
    let missed_kib = peer(&tracked, 2).volumes[0].out_of_sync_kib;
    assert!(
        missed_kib <= SPAN * BLOCK as u64 / 1024,
        "only the blocks written meanwhile are out of sync toward node2: {tracked:#?}"
    );

    nodes[0].kill9();
    nodes[1]
        .wait("the Primary is gone", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    back_from_a_secondary(&mut nodes, &log).await;
}

/// Three disks: node2 (away) and node0 (the Primary) gone, node1 up. node2 comes back and
/// meets node1 alone: a bitmap resync from it, after which both hold every acknowledged write;
/// then node0 comes back and all three end in sync.
async fn back_from_a_secondary(nodes: &mut [Node], log: &AckLog) {
    let mark = nodes[2].log_mark();
    nodes[2].start().await;
    nodes[2]
        .wait_log(
            mark,
            &["handshake", "peer=1", "outcome=SyncTarget(Bitmap)"],
            SETTLE,
        )
        .await;
    for (node, other) in [(1usize, 2u8), (2, 1)] {
        nodes[node]
            .wait("node1 and node2 in sync", SETTLE, |s| {
                s.volumes[0].disk == "UpToDate"
                    && peer(s, other).connection == "Connected"
                    && peer(s, other)
                        .volumes
                        .iter()
                        .all(|v| v.replication == "Established" && v.peer_disk == "UpToDate")
            })
            .await;
    }
    assert_data(log, &nodes[2], "resynced by bitmap from a Secondary").await;
    assert_data(log, &nodes[1], "its source").await;

    nodes[0].start().await;
    for node in nodes.iter() {
        node.wait("all three in sync", SETTLE, |s| all_in_sync(s, 2))
            .await;
    }
    for node in nodes.iter() {
        assert_data(log, node, "all three back").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// A Secondary records what an absent disk misses in bits that live in memory until its
/// bitmaps are written. Lost at the same instant as the Primary, it keeps them through its
/// activity log: the writes it applied are in hot extents, which its restart sets out of sync
/// toward every peer. The absent disk gets those extents back, not the whole volume, and holds
/// every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_lost_with_the_primary_keeps_what_an_absent_disk_missed() {
    let (_layout, mut nodes, log, writer) = writing_without_node2().await;
    // Writes in flight, the bits toward node2 in node1's memory: both lost at once.
    Node::kill9_together(&mut nodes[..2]);
    let _ = writer.stop().await;

    nodes[1].start().await;
    let back = nodes[1]
        .wait("node1 knows what node2 misses", SETTLE, |s| {
            peer(s, 2).volumes[0].out_of_sync_kib > 0
        })
        .await;
    let missed_kib = peer(&back, 2).volumes[0].out_of_sync_kib;
    let extent_kib = EXTENT_BLOCKS * BLOCK as u64 / 1024;
    assert!(
        missed_kib <= extent_kib,
        "the hot extent toward node2, not the whole volume ({} KiB): {back:#?}",
        USABLE / 1024
    );

    back_from_a_secondary(&mut nodes, &log).await;
}

/// Two disks in sync whose resyncs run at 8 MiB/s at most, slow enough to be caught in the
/// middle; node0 writes, and node1 is killed and left out until `kib` KiB are out of sync
/// toward it. Returns the layout (its directory lives as long as it does), the nodes, the log
/// of acknowledged writes and node0's writer, still writing.
async fn a_secondary_left_behind(kib: u64) -> (Layout, Vec<Node>, Arc<AckLog>, Writer) {
    let mut layout = Layout::loopback(2, 0, USABLE);
    layout.options.c_max_rate_kib = RATE_KIB;
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    wait_acks(&log, 0, 100, SETTLE).await;

    nodes[1].kill9();
    nodes[0]
        .wait("the Secondary is gone", SETTLE, |s| {
            peer(s, 1).connection != "Connected"
        })
        .await;
    nodes[0]
        .wait("enough out of sync toward the Secondary", SETTLE, |s| {
            peer(s, 1).volumes[0].out_of_sync_kib >= kib
        })
        .await;
    (layout, nodes, log, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_target_killed_mid_resync_resumes_and_completes() {
    // Enough missed writes for a resync of several seconds at the rate limit.
    let (_layout, mut nodes, log, writer) = a_secondary_left_behind(8 * 1024).await;
    // During the resync, writes go on in the first 4 MiB extent only: the target applies them
    // through its activity log, and the extent they heat is resynced again after its kill.
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, EXTENT_BLOCKS).await;

    let mark = nodes[1].log_mark();
    nodes[1].start().await;
    let first = nodes[1].wait_log(mark, &["resync starts"], SETTLE).await;
    // Past half of it: a second or more at the rate limit, so its progress was put on disk
    // at least once (`RESYNC_CHECKPOINT`).
    let syncing = nodes[1]
        .wait("the resync is under way", SETTLE, |s| {
            let volume = &peer(s, 0).volumes[0];
            volume.replication == "SyncTarget"
                && volume
                    .done_percent
                    .is_some_and(|d| (50.0..85.0).contains(&d))
        })
        .await;
    // Writes stop for a moment, so that what is left at the kill is exactly what the resumed
    // resync must copy.
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[1].kill9();
    let gone = nodes[0]
        .wait("the target is gone", SETTLE, |s| {
            peer(s, 1).connection != "Connected"
        })
        .await;
    let left_at_kill = peer(&gone, 1).volumes[0].out_of_sync_kib;

    let mark = nodes[1].log_mark();
    nodes[1].start().await;
    let resumed = nodes[1].wait_log(mark, &["resync starts"], SETTLE).await;
    // Writes go on during the resumed resync.
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    for node in &nodes {
        node.wait("the resumed resync completed", SETTLE, |s| {
            all_in_sync(s, 1)
        })
        .await;
    }
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[0]
        .wait("the Primary demoted", SETTLE, |s| s.role == "Secondary")
        .await;
    assert_data(&log, &nodes[1], "the target after the resumed resync").await;
    assert_data(&log, &nodes[0], "the source").await;
    // It resumed: what was copied before the target last put its progress on disk is not
    // copied again. (That is all a kill -9 leaves: the hot extents of the target's activity
    // log, the Primary's writes it applied, are resynced again on top of what the source
    // knows is left.)
    let amount = |line: &str| -> u64 {
        line.split("kib=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no amount in {line}"))
    };
    let (started_kib, kib) = (amount(&first), amount(&resumed));
    println!(
        "started with {started_kib} KiB; killed at {:.1}% done with {left_at_kill} KiB left on \
         the source; resumed with {kib} KiB",
        peer(&syncing, 0).volumes[0]
            .done_percent
            .unwrap_or_default()
    );
    assert!(
        kib < started_kib,
        "the resumed resync starts from the progress on disk ({kib} KiB), not from the start \
         ({started_kib} KiB)"
    );
}

/// A member whose disk is a resync target becomes Primary (its peer has the data) and writes
/// while its disk resyncs. A write it makes after asking the source for the write's blocks goes
/// to the source after the request, so the source's reply holds the blocks as they were: that
/// reply must not be laid over the write. Every acknowledged write must be on both disks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_writing_while_its_own_disk_resyncs_keeps_every_write() {
    // node1 misses half the volume: its resync then meets many of its own writes.
    let (_layout, mut nodes, log, writer) = a_secondary_left_behind(16 * 1024).await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[0]
        .wait("node0 demoted", SETTLE, |s| s.role == "Secondary")
        .await;

    // node1 comes back as a resync target, and its first write makes it Primary.
    nodes[1].start().await;
    nodes[1]
        .wait("node1 resyncs from node0", SETTLE, |s| {
            peer(s, 0).volumes[0].replication == "SyncTarget"
        })
        .await;
    let writer = Writer::start(&nodes[1].nbd_socket(), log.clone(), 1, DEPTH, BLOCKS).await;
    for node in &nodes {
        node.wait("resynced while node1 writes", SETTLE, |s| all_in_sync(s, 1))
            .await;
    }
    assert_eq!(nodes[1].status().await.unwrap().role, "Primary");
    let acked = log.acked_count();
    wait_acks(&log, acked, 200, SETTLE).await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[1]
        .wait("node1 demoted", SETTLE, |s| s.role == "Secondary")
        .await;
    assert_data(&log, &nodes[1], "the Primary that wrote during its resync").await;
    assert_data(&log, &nodes[0], "the source").await;
}

/// Two disks and a diskless tiebreaker, each in its own network namespace, in sync, and
/// member `writer` writing until `acks` writes are acknowledged.
struct InNamespaces {
    fabric: Fabric,
    /// Its directory lives as long as the test holds it.
    _layout: Layout,
    nodes: Vec<Node>,
    log: Arc<AckLog>,
    writer: Writer,
}

/// [`InNamespaces`], or None where network namespaces cannot be made (`test` is then skipped
/// with the reason).
async fn three_in_namespaces(test: &str, writer: u8, acks: u64) -> Option<InNamespaces> {
    let fabric = match Fabric::new(3) {
        Ok(fabric) => fabric,
        Err(reason) => {
            skip(test, &reason);
            return None;
        }
    };
    let layout = Layout::new(fabric.members(2), USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(
        &nodes[writer as usize].nbd_socket(),
        log.clone(),
        writer,
        DEPTH,
        BLOCKS,
    )
    .await;
    wait_acks(&log, 0, acks, SETTLE).await;
    Some(InNamespaces {
        fabric,
        _layout: layout,
        nodes,
        log,
        writer,
    })
}

/// Three members in network namespaces: node0 and node1 with disks, node2 a diskless
/// tiebreaker. node0 writes; then node0 is cut off from both others. node0 has no quorum:
/// its writes fail (never acknowledged without reaching a quorum). node1 and the tiebreaker are
/// a majority: node1 takes over the writes. The partition heals: node0 resyncs from node1, one
/// history, no split brain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_without_quorum_fails_its_writes_and_the_majority_goes_on() {
    let Some(InNamespaces {
        fabric,
        _layout,
        nodes,
        log,
        writer: minority,
    }) = three_in_namespaces(
        "a_partitioned_primary_without_quorum_fails_its_writes_and_the_majority_goes_on",
        0,
        300,
    )
    .await
    else {
        return;
    };

    fabric.isolate(0, true);
    nodes[0]
        .wait("node0 lost quorum", SETTLE, |s| !s.quorum)
        .await;
    // From now on, not one write is acknowledged on node0.
    let acked = log.acked_count();
    let failed = log.failed_count();
    let deadline = std::time::Instant::now() + SETTLE;
    while log.failed_count() < failed + 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "node0's writes neither fail nor succeed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        log.acked_count(),
        acked,
        "a write was acknowledged without quorum"
    );

    // The majority: node1 sees node0 gone and is promoted by its first write.
    nodes[1]
        .wait("node1 keeps quorum without node0", SETTLE, |s| {
            s.quorum && peer(s, 0).connection != "Connected" && peer(s, 2).connection == "Connected"
        })
        .await;
    nodes[2]
        .wait("the tiebreaker sees node0 gone", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    let majority = Writer::start(&nodes[1].nbd_socket(), log.clone(), 1, DEPTH, BLOCKS).await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;
    assert_eq!(nodes[1].status().await.unwrap().role, "Primary");
    let report = minority.stop().await;
    assert!(
        report.errors.get(&NBD_EIO).copied().unwrap_or(0) > 0,
        "node0's writes failed with EIO: {report:?}"
    );

    fabric.isolate(0, false);
    for node in &nodes {
        node.wait("healed and resynced", SETTLE, |s| all_in_sync(s, 2))
            .await;
    }
    let acked = log.acked_count();
    wait_acks(&log, acked, 200, SETTLE).await;
    let report = majority.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[1]
        .wait("node1 demoted", SETTLE, |s| s.role == "Secondary")
        .await;
    for node in &nodes {
        assert_data(&log, node, "after the partition healed").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// The same three members; only the link between the two disks is cut. Both keep quorum
/// through the tiebreaker, so the Primary goes on — after outdating the other disk through the
/// tiebreaker — and the other disk may not become Primary. Healed: it resyncs, one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_the_disks_leaves_one_primary_and_one_history() {
    let Some(InNamespaces {
        fabric,
        _layout,
        nodes,
        log,
        writer,
    }) = three_in_namespaces(
        "a_cut_between_the_disks_leaves_one_primary_and_one_history",
        0,
        300,
    )
    .await
    else {
        return;
    };

    fabric.set_link(0, 1, false);
    nodes[0]
        .wait("node0 lost node1, keeps quorum", SETTLE, |s| {
            s.quorum && peer(s, 1).connection != "Connected"
        })
        .await;
    nodes[1]
        .wait("node1 lost node0", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;

    // node0 outdated node1 through the tiebreaker before it went on without it: node1 knows
    // its data is Outdated and may not write.
    nodes[1]
        .wait("node1 is Outdated", SETTLE, |s| {
            s.volumes[0].disk == "Outdated"
        })
        .await;
    let mut other = Nbd::connect_within(&nodes[1].nbd_socket(), SETTLE).await;
    let error = other
        .write(0, &block_content(0, u64::MAX, 1))
        .await
        .unwrap();
    assert!(
        error == NBD_EPERM || error == NBD_EIO,
        "a second Primary was refused ({error})"
    );
    other.close().await;
    assert_eq!(nodes[1].status().await.unwrap().role, "Secondary");

    fabric.set_link(0, 1, true);
    for node in &nodes {
        node.wait("healed and resynced", SETTLE, |s| all_in_sync(s, 2))
            .await;
    }
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[0]
        .wait("node0 demoted", SETTLE, |s| s.role == "Secondary")
        .await;
    for node in &nodes {
        assert_data(&log, node, "after the cut healed").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// Two disks and a diskless Primary. The link between the Primary and node1 is cut, while
/// node1 still reaches node0: the Primary outdates node1 and writes on with node0, which
/// records what node1 misses. node1 stays linked to node0 throughout, so no handshake between
/// them decides a resync on its own; when the cut heals, node1 must get every write it missed
/// and end UpToDate, not stay Outdated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_cut_off_from_a_diskless_primary_only_is_resynced_when_the_cut_heals() {
    let Some(InNamespaces {
        fabric,
        _layout,
        nodes,
        log,
        writer,
    }) = three_in_namespaces(
        "a_disk_cut_off_from_a_diskless_primary_only_is_resynced_when_the_cut_heals",
        2,
        300,
    )
    .await
    else {
        return;
    };

    fabric.set_link(2, 1, false);
    nodes[1]
        .wait("node1 is Outdated, still linked to node0", SETTLE, |s| {
            s.volumes[0].disk == "Outdated" && peer(s, 0).connection == "Connected"
        })
        .await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;

    fabric.set_link(2, 1, true);
    nodes[1]
        .wait("node1 resynced, linked to both", SETTLE, |s| {
            s.volumes[0].disk == "UpToDate"
                && [0, 2].iter().all(|p| peer(s, *p).connection == "Connected")
        })
        .await;
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    for node in &nodes[..2] {
        assert_data(&log, node, "after the cut healed").await;
    }
    for node in &nodes {
        node.wait("healed and in sync", SETTLE, |s| all_in_sync(s, 2))
            .await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// Three disks. node2 is killed while node0 writes; it comes back able to reach node1 only
/// (the link to node0 is cut) and resyncs from that Secondary while node0 goes on writing. The
/// writes node1 applies after the resync has passed their blocks never reach node2, so the
/// resync may not make node2 UpToDate: it is held at its end. node0 crashes; with no Primary
/// writing without node2 any more, node2 resyncs again from node1 and then holds every
/// acknowledged write. Healed, everyone ends in sync with everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_resynced_by_a_secondary_while_the_primary_writes_without_it_misses_nothing() {
    secondary_resync_while_a_primary_writes_without_the_target(
        "a_disk_resynced_by_a_secondary_while_the_primary_writes_without_it_misses_nothing",
        3,
        Roles {
            writer: 0,
            behind: 2,
            source: 1,
        },
    )
    .await;
}

/// The same with the article's layout: two disks and a diskless node that uses the volume
/// (node2). node1 is killed, comes back able to reach node0 only, and node0 — which records
/// for the diskless Primary what node1 misses — resyncs it while node2 writes through node0
/// alone. Held until node2 crashes, then resynced again; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_resynced_while_a_diskless_primary_writes_without_it_misses_nothing() {
    secondary_resync_while_a_primary_writes_without_the_target(
        "a_disk_resynced_while_a_diskless_primary_writes_without_it_misses_nothing",
        2,
        Roles {
            writer: 2,
            behind: 1,
            source: 0,
        },
    )
    .await;
}

/// Who does what in [`secondary_resync_while_a_primary_writes_without_the_target`].
struct Roles {
    /// The Primary: writes throughout, then crashes.
    writer: u8,
    /// Killed, back with its link to the writer cut.
    behind: u8,
    /// The Secondary that resyncs it.
    source: u8,
}

async fn secondary_resync_while_a_primary_writes_without_the_target(
    test: &str,
    diskful: u8,
    roles: Roles,
) {
    let Roles {
        writer: w,
        behind: b,
        source: s,
    } = roles;
    let fabric = match Fabric::new(3) {
        Ok(fabric) => fabric,
        Err(reason) => return skip(test, &reason),
    };
    let mut layout = Layout::new(fabric.members(diskful), USABLE);
    // A resync of a few seconds, so that many writes land behind its cursor.
    layout.options.c_max_rate_kib = 8 * 1024;
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(
        &nodes[w as usize].nbd_socket(),
        log.clone(),
        w,
        DEPTH,
        BLOCKS,
    )
    .await;
    wait_acks(&log, 0, 200, SETTLE).await;

    nodes[b as usize].kill9();
    nodes[w as usize]
        .wait("the member to fall behind is gone", SETTLE, |st| {
            peer(st, b).connection != "Connected"
        })
        .await;
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;

    fabric.set_link(w, b, false);
    let mark = nodes[b as usize].log_mark();
    nodes[b as usize].start().await;
    nodes[b as usize]
        .wait_log(mark, &["resync is held", &format!("source={s}")], SETTLE)
        .await;
    // Held: the writes go on, and the member behind is not UpToDate.
    let acked = log.acked_count();
    wait_acks(&log, acked, 100, SETTLE).await;
    let held = nodes[b as usize].status().await.unwrap();
    assert_ne!(held.volumes[0].disk, "UpToDate", "{held:#?}");
    let from_source = &peer(&held, s).volumes[0];
    assert_eq!(from_source.replication, "SyncTarget", "{held:#?}");
    assert_eq!(
        from_source.held_by.as_deref(),
        Some(format!("node{w}").as_str()),
        "{held:#?}"
    );

    nodes[w as usize].kill9();
    let report = writer.stop().await;
    println!("writer: {report:?}");
    for node in [b, s] {
        let other = if node == b { s } else { b };
        nodes[node as usize]
            .wait("the writer gone, the other two in sync", SETTLE, |st| {
                peer(st, w).connection != "Connected"
                    && st.volumes[0].disk == "UpToDate"
                    && peer(st, other).connection == "Connected"
                    && peer(st, other)
                        .volumes
                        .iter()
                        .all(|v| v.replication == "Established" && v.peer_disk == "UpToDate")
            })
            .await;
    }
    assert_data(&log, &nodes[b as usize], "resynced by a Secondary").await;
    assert_data(&log, &nodes[s as usize], "its source").await;

    fabric.set_link(w, b, true);
    nodes[w as usize].start().await;
    for node in &nodes {
        node.wait("healed and resynced", SETTLE, |st| all_in_sync(st, 2))
            .await;
    }
    for node in &nodes {
        assert_data(&log, node, "after healing").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// The double fault after a cut between the disks: node0 went on writing without node1 (with
/// the tiebreaker's vote), then node0 is cut off from the tiebreaker too. node1 and the
/// tiebreaker are a majority, but node1 lacks node0's latest writes: it must not become
/// Primary (DRBD: it was outdated by the Primary through the tiebreaker). Healed, node1
/// resyncs from node0 and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_left_behind_is_not_promoted_when_the_primary_goes_away_too() {
    let Some(InNamespaces {
        fabric,
        _layout,
        nodes,
        log,
        writer,
    }) = three_in_namespaces(
        "a_disk_left_behind_is_not_promoted_when_the_primary_goes_away_too",
        0,
        200,
    )
    .await
    else {
        return;
    };

    fabric.set_link(0, 1, false);
    nodes[0]
        .wait("node0 lost node1, keeps quorum", SETTLE, |s| {
            s.quorum && peer(s, 1).connection != "Connected"
        })
        .await;
    nodes[1]
        .wait("node1 lost node0", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    // Writes node1 does not have.
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;

    fabric.set_link(0, 2, false);
    nodes[0]
        .wait("node0 lost quorum", SETTLE, |s| !s.quorum)
        .await;
    nodes[2]
        .wait("the tiebreaker lost node0", SETTLE, |s| {
            peer(s, 0).connection != "Connected"
        })
        .await;
    let report = writer.stop().await;
    assert!(report.failed > 0, "{report:?}");

    nodes[1]
        .wait("node1 knows it is Outdated", SETTLE, |s| {
            s.volumes[0].disk == "Outdated"
        })
        .await;
    let mut behind = Nbd::connect_within(&nodes[1].nbd_socket(), SETTLE).await;
    let error = behind
        .write(0, &block_content(0, u64::MAX, 1))
        .await
        .unwrap();
    assert_ne!(
        error, 0,
        "the disk left behind was promoted and took a write"
    );
    behind.close().await;
    let status = nodes[1].status().await.unwrap();
    assert_eq!(status.role, "Secondary", "{status:#?}");

    fabric.isolate(0, false);
    for node in &nodes {
        node.wait("healed and resynced", SETTLE, |s| all_in_sync(s, 2))
            .await;
    }
    for node in &nodes {
        assert_data(&log, node, "after the double fault healed").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
}

/// What the tiebreaker was told survives its restart. node0 (Primary) loses node1 and goes on
/// writing after outdating it through the tiebreaker; then the tiebreaker's daemon restarts,
/// node0 crashes and node1 — which never heard that it is Outdated — comes back to the
/// tiebreaker alone. The two are a majority, but node1 lacks node0's last acknowledged writes:
/// the tiebreaker must neither vouch for node1's data, nor write or read on it, nor grant node1
/// a promotion. Healed: node1 resyncs from node0, the tiebreaker no longer holds it Outdated,
/// across another restart too, and node1 may become Primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tiebreaker_still_refuses_the_disk_the_primary_wrote_without() {
    let Some(InNamespaces {
        fabric,
        _layout,
        mut nodes,
        log,
        writer,
    }) = three_in_namespaces(
        "a_restarted_tiebreaker_still_refuses_the_disk_the_primary_wrote_without",
        0,
        200,
    )
    .await
    else {
        return;
    };

    fabric.isolate(1, true);
    nodes[0]
        .wait("node0 lost node1, keeps quorum", SETTLE, |s| {
            s.quorum && peer(s, 1).connection != "Connected"
        })
        .await;
    nodes[2]
        .wait("the tiebreaker lost node1", SETTLE, |s| {
            peer(s, 1).connection != "Connected"
        })
        .await;
    // Writes node1 does not have, acknowledged once the tiebreaker recorded node1 Outdated.
    let acked = log.acked_count();
    wait_acks(&log, acked, 300, SETTLE).await;

    nodes[2].kill9();
    nodes[2].start().await;
    nodes[2]
        .wait("the restarted tiebreaker is back with node0", SETTLE, |s| {
            s.quorum && peer(s, 0).connection == "Connected" && peer(s, 0).role == "Primary"
        })
        .await;
    // node0 lost quorum when the tiebreaker went away and does not regain it through a
    // diskless member: its writes fail from then on, none is acknowledged.

    nodes[0].kill9();
    let report = writer.stop().await;
    println!("writer on node0 until its crash: {report:?}");
    fabric.set_link(1, 2, true);
    nodes[2]
        .wait("the tiebreaker reaches node1, not node0", SETTLE, |s| {
            peer(s, 1).connection == "Connected"
                && peer(s, 1).volumes[0].peer_disk != "DUnknown"
                && peer(s, 0).connection != "Connected"
        })
        .await;
    nodes[1]
        .wait("node1 reaches the tiebreaker", SETTLE, |s| {
            peer(s, 2).connection == "Connected"
        })
        .await;

    let mut tiebreaker = Nbd::connect_within(&nodes[2].nbd_socket(), SETTLE).await;
    let error = tiebreaker
        .write(0, &block_content(0, u64::MAX, 2))
        .await
        .unwrap();
    assert_ne!(
        error, 0,
        "the tiebreaker became Primary on node1's Outdated data"
    );
    let read = tiebreaker.read(0, 1 << 20).await.unwrap();
    assert!(read.is_err(), "the tiebreaker read node1's Outdated data");
    tiebreaker.close().await;
    let mut behind = Nbd::connect_within(&nodes[1].nbd_socket(), SETTLE).await;
    let error = behind
        .write(0, &block_content(0, u64::MAX, 1))
        .await
        .unwrap();
    assert_ne!(error, 0, "node1 became Primary on its Outdated data");
    behind.close().await;
    for node in [&nodes[1], &nodes[2]] {
        let status = node.status().await.unwrap();
        assert_eq!(status.role, "Secondary", "{status:#?}");
    }
    let status = nodes[2].status().await.unwrap();
    assert_eq!(
        peer(&status, 1).volumes[0].peer_disk,
        "Outdated",
        "the tiebreaker holds node1 Outdated: {status:#?}"
    );
    assert!(
        !status.quorum,
        "node1 vouched for the tiebreaker's quorum: {status:#?}"
    );

    nodes[0].start().await;
    fabric.isolate(0, false);
    for node in &nodes {
        node.wait("healed and resynced", SETTLE, |s| all_in_sync(s, 2))
            .await;
    }
    for node in &nodes {
        assert_data(&log, node, "after node0 came back").await;
        assert!(no_split_brain(&node.status().await.unwrap()));
    }
    // The record went with the resync, on disk too.
    nodes[2].kill9();
    nodes[2].start().await;
    nodes[2]
        .wait(
            "the tiebreaker, restarted again, sees both disks UpToDate",
            SETTLE,
            |s| all_in_sync(s, 2),
        )
        .await;
    nodes[0]
        .wait("node0 is Secondary", SETTLE, |s| s.role == "Secondary")
        .await;
    let mut promoted = Nbd::connect_within(&nodes[1].nbd_socket(), SETTLE).await;
    let error = promoted
        .write(0, &block_content(0, u64::MAX - 1, 1))
        .await
        .unwrap();
    assert_eq!(error, 0, "node1, resynced, may become Primary");
    promoted.close().await;
}

/// Sends `bytes` to a member's replication port, closes the sending side and waits for the
/// member to hang up.
async fn send_garbage(to: std::net::SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SETTLE, stream.read_to_end(&mut rest)).await;
}

fn hello(resource: &str, node_id: u8) -> Vec<u8> {
    let payload = Hello {
        resource: resource.into(),
        node_id,
        challenge: [7; 32],
    }
    .encode();
    let mut frame = wire::encode_header(Kind::Hello, 0, 0, payload.len() as u32).to_vec();
    frame.extend_from_slice(&payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_speaking_garbage_is_refused_with_a_precise_reason_and_harms_nothing() {
    let layout = Layout::loopback(2, 0, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let log = AckLog::new();
    let writer = Writer::start(&nodes[0].nbd_socket(), log.clone(), 0, DEPTH, BLOCKS).await;
    wait_acks(&log, 0, 100, SETTLE).await;
    // node1 accepts its peers (node0 dials it); every attempt below goes to its port.
    let port = layout.members[1].listen;
    let target = &nodes[1];
    let mark = target.log_mark();
    let primary_mark = nodes[0].log_mark();

    // Random bytes.
    let random: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    send_garbage(port, &random).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "not a MIRROR peer frame",
            ],
            SETTLE,
        )
        .await;

    // Another protocol version.
    let mut old = hello(RESOURCE, 0);
    old[4..6].copy_from_slice(&99u16.to_le_bytes());
    send_garbage(port, &old).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "protocol version 99",
            ],
            SETTLE,
        )
        .await;

    // A truncated frame: a Hello header, then less than it announced, then the end.
    let whole = hello(RESOURCE, 0);
    send_garbage(port, &whole[..wire::HEADER_BYTES + 10]).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "closed the connection in the middle of a Hello",
            ],
            SETTLE,
        )
        .await;

    // A Hello that announces far more than a Hello can hold.
    let mut huge = wire::encode_header(Kind::Hello, 0, 0, 1 << 20).to_vec();
    huge.extend_from_slice(&[0; 64]);
    send_garbage(port, &huge).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "Hello frame",
                "out of bounds",
            ],
            SETTLE,
        )
        .await;

    // A node-id that is no member, and a resource it does not serve.
    send_garbage(port, &hello(RESOURCE, 9)).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "node-id 9 is not a peer",
            ],
            SETTLE,
        )
        .await;
    send_garbage(port, &hello("other", 0)).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "serves resource 'other'",
            ],
            SETTLE,
        )
        .await;

    // The right hello, the wrong secret.
    let mut stream = TcpStream::connect(port).await.unwrap();
    stream.write_all(&hello(RESOURCE, 0)).await.unwrap();
    let mut header = [0u8; wire::HEADER_BYTES];
    stream.read_exact(&mut header).await.unwrap();
    let theirs = wire::decode_header(&header).unwrap();
    assert_eq!(theirs.kind, Kind::Hello);
    let mut payload = vec![0u8; theirs.length as usize];
    stream.read_exact(&mut payload).await.unwrap();
    let theirs = Hello::decode(&payload).unwrap();
    let proof = peer::proof("not the secret", &theirs.challenge, 0, RESOURCE);
    let mut auth = wire::encode_header(Kind::Auth, 0, 0, 32).to_vec();
    auth.extend_from_slice(&proof);
    stream.write_all(&auth).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(SETTLE, stream.read_to_end(&mut rest)).await;
    target
        .wait_log(
            mark,
            &[
                "resource=r0",
                "refused a peer connection",
                "failed authentication (wrong shared secret)",
            ],
            SETTLE,
        )
        .await;

    // Nothing was harmed: the real connection never dropped, writes went on, both in sync.
    let acked = log.acked_count();
    wait_acks(&log, acked, 100, SETTLE).await;
    for node in &nodes {
        let status = node.status().await.unwrap();
        assert!(all_in_sync(&status, 1), "{status:#?}");
    }
    for (node, mark) in [(&nodes[0], primary_mark), (&nodes[1], mark)] {
        let since = node.log_since(mark);
        assert!(
            !since.contains("peer disconnected"),
            "node{} lost its real peer:\n{since}",
            node.node_id
        );
    }
    let report = writer.stop().await;
    assert_eq!(report.failed, 0, "{report:?}");
    nodes[0]
        .wait("the Primary demoted", SETTLE, |s| s.role == "Secondary")
        .await;
    for node in &nodes {
        assert_data(&log, node, "after the garbage").await;
    }
}

/// Whether `a` and `b` hold the same bytes in the first `len` bytes of their data areas;
/// the first differing 4 KiB blocks otherwise.
fn differing_blocks(a: &std::path::Path, b: &std::path::Path, len: usize) -> Vec<u64> {
    let read = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.truncate(len);
        bytes
    };
    let (a, b) = (read(a), read(b));
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64)
        .take(8)
        .collect()
}

/// A writer through `primary`'s export over the first `span` blocks, once a number of writes
/// that differs from round to round is acknowledged: so a kill lands at a different place.
async fn writing_a_few_blocks(primary: &Node, span: u64, round: u64) -> (Arc<AckLog>, Writer) {
    let log = AckLog::new();
    let writer = Writer::start(
        &primary.nbd_socket(),
        log.clone(),
        primary.node_id,
        DEPTH,
        span,
    )
    .await;
    wait_acks(&log, 0, 200 + round * 37, SETTLE).await;
    (log, writer)
}

/// The Primary killed under writes to a few blocks, four times: the disks that stay must end
/// with the same bytes, not merely the same generation (a write in flight at the kill may
/// have reached one disk and not the other; see `peer_ack`). Then, the Primary back, all
/// disks hold the same bytes.
async fn a_lost_primary_leaves_identical_disks(diskful: u8, diskless: u8, primary: u8) {
    let layout = Layout::loopback(diskful, diskless, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let peers = nodes.len() - 1;
    let disks: Vec<u8> = (0..diskful).collect();
    let survivors: Vec<u8> = disks.iter().copied().filter(|d| *d != primary).collect();
    // Few blocks, written over and over: writes in flight at the kill overlap earlier ones.
    let span = 32;
    let compare = |which: &[u8], when: &str| {
        for pair in which.windows(2) {
            let differing = differing_blocks(
                &layout.backing(pair[0]),
                &layout.backing(pair[1]),
                span as usize * BLOCK,
            );
            assert!(
                differing.is_empty(),
                "{when}: node{} and node{} report their disks in sync, but blocks {differing:?} differ",
                pair[0],
                pair[1]
            );
        }
    };
    for round in 0..4u64 {
        let (log, writer) = writing_a_few_blocks(&nodes[primary as usize], span, round).await;
        nodes[primary as usize].kill9();
        let _ = writer.stop().await;
        for node in &survivors {
            nodes[*node as usize]
                .wait("the Primary gone, the other disks in sync", SETTLE, |s| {
                    peer(s, primary).connection != "Connected"
                        && s.volumes[0].disk == "UpToDate"
                        && survivors.iter().filter(|o| *o != node).all(|o| {
                            peer(s, *o).connection == "Connected"
                                && peer(s, *o).volumes.iter().all(|v| {
                                    v.replication == "Established"
                                        && v.peer_disk == "UpToDate"
                                        && v.out_of_sync_kib == 0
                                })
                        })
                })
                .await;
            assert_data(&log, &nodes[*node as usize], "a disk left").await;
        }
        compare(&survivors, &format!("round {round}, the Primary gone"));
        nodes[primary as usize].start().await;
        for node in &nodes {
            node.wait("all in sync", SETTLE, |s| all_in_sync(s, peers))
                .await;
        }
        compare(&disks, &format!("round {round}, the Primary back"));
    }
}

/// Every member killed at the same moment under writes to a few blocks, four times, in the
/// article's layout (two disks, the diskless Primary): no member lives on to remember which
/// writes the Primary never confirmed, so each disk's activity log must. Once all are back
/// and in sync, the disks hold the same bytes and every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disks_end_identical_after_every_member_is_lost_at_once() {
    let layout = Layout::loopback(2, 1, USABLE);
    let mut nodes = layout.prepare();
    start_in_sync(&mut nodes).await;
    let primary = 2u8;
    let span = 32u64;
    for round in 0..4u64 {
        let (log, writer) = writing_a_few_blocks(&nodes[primary as usize], span, round).await;
        Node::kill9_together(&mut nodes);
        let _ = writer.stop().await;
        for node in nodes.iter_mut() {
            node.start().await;
        }
        for node in &nodes {
            node.wait("all back and in sync", SETTLE, |s| all_in_sync(s, 2))
                .await;
        }
        let differing = differing_blocks(
            &layout.backing(0),
            &layout.backing(1),
            span as usize * BLOCK,
        );
        assert!(
            differing.is_empty(),
            "round {round}: node0 and node1 report their disks in sync, but blocks {differing:?} differ"
        );
        for node in &nodes[..2] {
            assert_data(&log, node, "a disk after every member was lost").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disks_a_crashed_diskless_primary_wrote_to_end_identical() {
    a_lost_primary_leaves_identical_disks(2, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secondaries_of_a_crashed_diskful_primary_end_identical() {
    a_lost_primary_leaves_identical_disks(3, 0, 0).await;
}
