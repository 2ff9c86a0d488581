//! The engine in one process: members of a resource on loopback, each with a backing file,
//! driven through the `Volume` interface the frontends use. Checks what protocol C promises:
//! a completed write is on every connected replica's disk; a member that was away gets what it
//! missed (and only that) when it is back; a diskless member reads and writes through its
//! peers; a second writer is refused; a wrong secret gets nothing.

mod ports;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrite_block::{AlignedBuf, IoError, Volume};
use ferrite_mirror::activity_log::AL_EXTENTS_DEFAULT;
use ferrite_mirror::backing::DEFAULT_PEER_SLOTS;
use ferrite_mirror::config::{Options, PeerConfig, ResourceConfig, VolumeConfig};
use ferrite_mirror::metadata::metadata_size;
use ferrite_mirror::outdated::OutdatedFile;
use ferrite_mirror::peer::PEER_FLUSH_INTERVAL;
use ferrite_mirror::resource::{AL_COOL_INTERVAL, Resource};
use ferrite_mirror::status::ResourceStatus;
use futures::StreamExt;
use ports::free_port;

const USABLE: u64 = 64 << 20;
const SETTLE: Duration = Duration::from_secs(10);

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

struct Member {
    node_id: u8,
    port: u16,
    backing: Option<PathBuf>,
}

struct Cluster {
    _dir: tempfile::TempDir,
    members: Vec<Member>,
    secret: String,
    /// The resync rate limit every member is configured with.
    c_max_rate_kib: u64,
    /// Whether the backing volumes were created zeroed (thin): the initial sync is skipped.
    new_volume: bool,
}

impl Cluster {
    /// Members 0..diskful are diskful, the rest diskless.
    fn new(diskful: u8, diskless: u8) -> Cluster {
        logs();
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let size = USABLE + metadata_size(USABLE, DEFAULT_PEER_SLOTS, AL_EXTENTS_DEFAULT).unwrap();
        let members = (0..diskful + diskless)
            .map(|node_id| {
                let backing = (node_id < diskful).then(|| {
                    let path = dir.path().join(format!("node{node_id}.img"));
                    let file = std::fs::File::create(&path).unwrap();
                    file.set_len(size).unwrap();
                    path
                });
                Member {
                    node_id,
                    port: free_port(),
                    backing,
                }
            })
            .collect();
        Cluster {
            _dir: dir,
            members,
            secret: "engine-test-secret".into(),
            c_max_rate_kib: Options::default().c_max_rate_kib,
            new_volume: true,
        }
    }

    fn config(&self, node_id: u8) -> ResourceConfig {
        let me = &self.members[node_id as usize];
        ResourceConfig {
            name: "res".into(),
            node_name: format!("node{node_id}"),
            node_id,
            listen: format!("127.0.0.1:{}", me.port).parse().unwrap(),
            secret: self.secret.clone(),
            peers: self
                .members
                .iter()
                .filter(|m| m.node_id != node_id)
                .map(|m| PeerConfig {
                    node_name: format!("node{}", m.node_id),
                    node_id: m.node_id,
                    address: format!("127.0.0.1:{}", m.port).parse().unwrap(),
                    diskless: m.backing.is_none(),
                })
                .collect(),
            volumes: vec![VolumeConfig {
                number: 0,
                minor: Some(1000),
                usable_bytes: USABLE,
                backing: me.backing.clone(),
                new_volume: self.new_volume,
            }],
            // As LINSTOR sets it: quorum with three or more members, none with two.
            options: Options {
                quorum: if self.members.len() >= 3 {
                    "majority"
                } else {
                    "off"
                }
                .into(),
                c_max_rate_kib: self.c_max_rate_kib,
                ..Options::default()
            },
        }
    }

    async fn up(&self, node_id: u8) -> Arc<Resource> {
        let outdated = OutdatedFile::at(
            self._dir
                .path()
                .join(format!("node{node_id}.outdated.json")),
        );
        Resource::up(self.config(node_id), outdated).await.unwrap()
    }

    fn on_disk(&self, node_id: u8, offset: u64, len: usize) -> Vec<u8> {
        let file =
            std::fs::File::open(self.members[node_id as usize].backing.as_ref().unwrap()).unwrap();
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).unwrap();
        buf
    }
}

/// Waits until a Primary's periodic flush of its peers has run (it runs at a tick once an
/// acknowledged write is [`PEER_FLUSH_INTERVAL`] old).
async fn settle_peer_flush() {
    tokio::time::sleep(PEER_FLUSH_INTERVAL + Duration::from_millis(750)).await;
}

/// Members 0, 1 and 2, up.
async fn up_three(cluster: &Cluster) -> (Arc<Resource>, Arc<Resource>, Arc<Resource>) {
    (
        cluster.up(0).await,
        cluster.up(1).await,
        cluster.up(2).await,
    )
}

/// Members 0 and 1 with disks and member 2 without, up and in sync.
async fn two_disks_and_a_diskless_member(
    cluster: &Cluster,
) -> (Arc<Resource>, Arc<Resource>, Arc<Resource>) {
    let (a, b, c) = up_three(cluster).await;
    wait(&c, "the diskless member sees both disks", |s| {
        all_up_to_date(s, 2)
    })
    .await;
    (a, b, c)
}

/// What a power loss does to writes a member had not flushed: zeroes on its disk.
fn zero_on_disk(cluster: &Cluster, member: usize, offset: u64, len: usize) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(cluster.members[member].backing.as_ref().unwrap())
        .unwrap()
        .write_all_at(&vec![0u8; len], offset)
        .unwrap();
}

fn pattern(seed: u8, len: usize) -> Bytes {
    let mut buf = AlignedBuf::zeroed(len);
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = seed.wrapping_add((i / 4096) as u8).wrapping_mul(31) ^ (i as u8);
    }
    Bytes::from_owner(buf)
}

fn all_up_to_date(status: &ResourceStatus, peers: usize) -> bool {
    status
        .volumes
        .iter()
        .all(|v| v.disk == "UpToDate" || v.disk == "Diskless")
        && status
            .peers
            .iter()
            .filter(|p| p.connection == "Connected")
            .count()
            == peers
        && status.peers.iter().all(|p| {
            p.volumes
                .iter()
                .all(|v| v.peer_disk == "UpToDate" || v.peer_disk == "Diskless")
        })
}

async fn wait(resource: &Resource, what: &str, predicate: impl Fn(&ResourceStatus) -> bool) {
    if let Err(status) = resource.wait_for(SETTLE, predicate).await {
        panic!("{what}: not reached; status: {status:#?}");
    }
}

/// Two diskful members up and in sync, and the first one's volume opened (it becomes Primary
/// at its first write). The cluster is returned to keep its directory alive.
async fn two_in_sync_opened_on_the_first() -> (
    Cluster,
    Arc<Resource>,
    Arc<Resource>,
    Arc<ferrite_mirror::volume::VolumeEngine>,
) {
    let cluster = Cluster::new(2, 0);
    let a = cluster.up(0).await;
    let b = cluster.up(1).await;
    wait(&a, "in sync", |s| all_up_to_date(s, 1)).await;
    wait(&b, "in sync", |s| all_up_to_date(s, 1)).await;
    let volume = a.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    (cluster, a, b, volume)
}

/// Both members' activity logs take the extents written, the Secondary's too (the Primary's
/// writes it applies), and give them up once they stay idle for a whole cooling pass: what a
/// crash would resync shrinks back to nothing on a quiet volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_activity_logs_take_the_extents_written_and_cool_once_they_are_idle() {
    let (_cluster, a, b, volume) = two_in_sync_opened_on_the_first().await;
    for extent in [0u64, 2, 5] {
        volume
            .write(extent << 22, pattern(extent as u8, 64 << 10), false)
            .await
            .unwrap();
    }
    for (member, resource) in [("the Primary", &a), ("the Secondary", &b)] {
        let hot = resource.status().volumes[0].hot_extents;
        assert_eq!(hot, 3, "{member}'s log holds the extents written");
    }
    ferrite_block::Volume::closed(volume.as_ref());
    // Idle for a whole pass, then the next pass cools them: two passes, with room to spare.
    let cooled = AL_COOL_INTERVAL * 4;
    for (member, resource) in [("the Primary", &a), ("the Secondary", &b)] {
        if let Err(status) = resource
            .wait_for(cooled, |s| s.volumes[0].hot_extents == 0)
            .await
        {
            panic!("{member}'s log did not cool: {status:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_write_is_on_both_replicas_and_a_returning_peer_gets_what_it_missed() {
    let cluster = Cluster::new(2, 0);
    let a = cluster.up(0).await;
    let b = cluster.up(1).await;
    wait(&a, "a new volume starts UpToDate on both", |s| {
        all_up_to_date(s, 1)
    })
    .await;
    wait(&b, "b sees the same", |s| all_up_to_date(s, 1)).await;

    let volume = a.volumes()[&0].clone();
    // A frontend holds it open on a (as an NBD client or a mount would), so a stays Primary.
    ferrite_block::Volume::opened(volume.as_ref());
    let first = pattern(1, 1 << 20);
    volume.write(0, first.clone(), false).await.unwrap();
    assert_eq!(a.status().role, "Primary", "the first write promotes");
    assert!(
        cluster.on_disk(1, 0, first.len())[..] == first[..],
        "protocol C: on b's disk; a: {:#?}",
        a.status()
    );
    assert_eq!(&cluster.on_disk(0, 0, first.len())[..], &first[..]);

    // b confirms the write on its stable storage with the next periodic flush ...
    settle_peer_flush().await;
    // ... then b is away: writes go on, and b's share is tracked.
    b.down().await;
    wait(&a, "b is gone", |s| s.peers[0].connection != "Connected").await;
    let missed = pattern(2, 256 << 10);
    volume.write(8 << 20, missed.clone(), false).await.unwrap();
    let status = a.status();
    assert_eq!(
        status.peers[0].volumes[0].out_of_sync_kib, 256,
        "{status:#?}"
    );
    assert_ne!(&cluster.on_disk(1, 8 << 20, missed.len())[..], &missed[..]);

    // b is back: it receives exactly what it missed.
    let b = cluster.up(1).await;
    wait(&b, "b resynced", |s| all_up_to_date(s, 1)).await;
    wait(&a, "a sees b in sync", |s| {
        all_up_to_date(s, 1) && s.peers[0].volumes[0].out_of_sync_kib == 0
    })
    .await;
    assert_eq!(&cluster.on_disk(1, 8 << 20, missed.len())[..], &missed[..]);
    assert_eq!(&cluster.on_disk(1, 0, first.len())[..], &first[..]);

    // b may not write while a is Primary and in use (b waits auto-promote-timeout first).
    let error = b.volumes()[&0]
        .write(0, pattern(3, 4096), false)
        .await
        .unwrap_err();
    assert!(matches!(error, IoError::ReadOnly(_)), "{error}");
    // Once a's user is gone, a demotes and b's write goes through.
    ferrite_block::Volume::closed(volume.as_ref());
    b.volumes()[&0]
        .write(0, pattern(3, 4096), false)
        .await
        .expect("b becomes Primary once a has let go");
    assert_eq!(b.status().role, "Primary");
    b.down().await;
    a.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diskless_member_reads_and_writes_through_its_peers() {
    let cluster = Cluster::new(2, 1);
    let (a, b, c) = two_disks_and_a_diskless_member(&cluster).await;
    let volume = c.volumes()[&0].clone();
    let data = pattern(9, 128 << 10);
    volume.write(4 << 20, data.clone(), true).await.unwrap();
    assert_eq!(c.status().role, "Primary");
    assert_eq!(&cluster.on_disk(0, 4 << 20, data.len())[..], &data[..]);
    assert_eq!(&cluster.on_disk(1, 4 << 20, data.len())[..], &data[..]);
    let read = volume.read(4 << 20, data.len() as u32).await.unwrap();
    assert_eq!(read, data);
    volume.flush().await.unwrap();
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_missed_a_diskless_primary_s_writes_gets_them_when_back() {
    // The Primary has no disk, so no bitmap of its own: the disk that stayed records what the
    // other one missed, or the two would meet on the same generation and never resync.
    let cluster = Cluster::new(2, 1);
    let (a, b, c) = two_disks_and_a_diskless_member(&cluster).await;
    let volume = c.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    let before = pattern(31, 64 << 10);
    volume.write(0, before.clone(), true).await.unwrap();
    a.down().await;
    wait(&c, "a gone", |s| {
        s.peers
            .iter()
            .all(|p| p.node_id != 0 || p.connection != "Connected")
    })
    .await;
    let missed = pattern(32, 128 << 10);
    volume.write(8 << 20, missed.clone(), false).await.unwrap();
    let fua = pattern(33, 64 << 10);
    volume.write(12 << 20, fua.clone(), true).await.unwrap();
    let a = cluster.up(0).await;
    wait(&a, "a resynced", |s| all_up_to_date(s, 2)).await;
    wait(&b, "b sees a in sync", |s| {
        all_up_to_date(s, 2) && s.peers.iter().all(|p| p.volumes[0].out_of_sync_kib == 0)
    })
    .await;
    assert_eq!(&cluster.on_disk(0, 0, before.len())[..], &before[..]);
    assert_eq!(&cluster.on_disk(0, 8 << 20, missed.len())[..], &missed[..]);
    assert_eq!(&cluster.on_disk(0, 12 << 20, fua.len())[..], &fua[..]);
    ferrite_block::Volume::closed(volume.as_ref());
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diskless_primary_s_unflushed_writes_are_resynced_to_the_disk_that_lost_them() {
    // a acknowledged a write of the diskless Primary c, then went away before flushing it
    // (its copy is zeroed here, as a power loss would take its page cache). c has no bitmap:
    // b records the range toward a, and a gets it back from b.
    let cluster = Cluster::new(2, 1);
    let (a, b, c) = two_disks_and_a_diskless_member(&cluster).await;
    let volume = c.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    let unflushed = pattern(51, 128 << 10);
    volume
        .write(4 << 20, unflushed.clone(), false)
        .await
        .unwrap();
    a.down().await;
    wait(&b, "b recorded the range toward a", |s| {
        s.peers
            .iter()
            .any(|p| p.node_id == 0 && p.volumes[0].out_of_sync_kib == 128)
    })
    .await;
    zero_on_disk(&cluster, 0, 4 << 20, unflushed.len());
    let a = cluster.up(0).await;
    wait(&b, "a resynced", |s| {
        all_up_to_date(s, 2) && s.peers.iter().all(|p| p.volumes[0].out_of_sync_kib == 0)
    })
    .await;
    assert_eq!(
        &cluster.on_disk(0, 4 << 20, unflushed.len())[..],
        &unflushed[..]
    );
    ferrite_block::Volume::closed(volume.as_ref());
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

/// A disk resyncs from a Secondary while a diskless Primary writes 512-byte pieces into the
/// blocks it is still to receive. The target keeps what those writes put in part of a block
/// and lays it over the block's reply (`resync_watch`): both disks end with the resync's data
/// and every piece, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_written_into_blocks_still_to_resync_survive_the_resync() {
    let mut cluster = Cluster::new(2, 1);
    // 1 MiB/s: the 4 MiB resync takes about 4 s, and the pieces land early in it.
    cluster.c_max_rate_kib = 1024;
    let (a, b, c) = two_disks_and_a_diskless_member(&cluster).await;
    let volume = c.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    b.down().await;
    wait(&c, "b gone", |s| {
        s.peers
            .iter()
            .all(|p| p.node_id != 1 || p.connection != "Connected")
    })
    .await;
    let missed = pattern(41, 4 << 20);
    volume.write(0, missed.clone(), false).await.unwrap();

    let b = cluster.up(1).await;
    wait(&b, "b resyncs from a", |s| {
        s.peers
            .iter()
            .any(|p| p.node_id == 0 && p.volumes[0].replication == "SyncTarget")
    })
    .await;
    let mut expected = missed.to_vec();
    for i in 0..256u64 {
        // One piece in every fourth block, never at the block's start.
        let offset = i * 16384 + 512 * (1 + i % 7);
        let piece = pattern(100u8.wrapping_add(i as u8), 512);
        volume.write(offset, piece.clone(), false).await.unwrap();
        expected[offset as usize..offset as usize + 512].copy_from_slice(&piece);
    }
    assert!(
        b.status()
            .peers
            .iter()
            .any(|p| p.node_id == 0 && p.volumes[0].replication == "SyncTarget"),
        "the pieces were written during the resync: {:#?}",
        b.status()
    );
    wait(&b, "b resynced", |s| all_up_to_date(s, 2)).await;
    wait(&a, "a sees b in sync", |s| {
        all_up_to_date(s, 2) && s.peers.iter().all(|p| p.volumes[0].out_of_sync_kib == 0)
    })
    .await;
    for member in [0, 1] {
        let on_disk = cluster.on_disk(member, 0, expected.len());
        let first_wrong = on_disk.iter().zip(&expected).position(|(x, y)| x != y);
        assert_eq!(first_wrong, None, "node{member} differs at that byte");
    }
    ferrite_block::Volume::closed(volume.as_ref());
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_missed_writes_gets_them_from_a_secondary_when_the_primary_is_gone() {
    // a (Primary) writes without c; then a goes away. c comes back to b alone: b has the
    // writes c missed, and c must get them from b, not meet it as an equal.
    let cluster = Cluster::new(3, 0);
    let (a, b, c) = up_three(&cluster).await;
    wait(&a, "all in sync", |s| all_up_to_date(s, 2)).await;
    let volume = a.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    volume.write(0, pattern(41, 64 << 10), true).await.unwrap();
    c.down().await;
    wait(&a, "c gone", |s| {
        s.peers
            .iter()
            .all(|p| p.node_id != 2 || p.connection != "Connected")
    })
    .await;
    let missed = pattern(42, 128 << 10);
    volume.write(8 << 20, missed.clone(), true).await.unwrap();
    ferrite_block::Volume::closed(volume.as_ref());
    wait(&a, "a demoted", |s| s.role == "Secondary").await;
    a.down().await;
    let c = cluster.up(2).await;
    wait(&c, "c in sync with b", |s| {
        s.peers.iter().any(|p| {
            p.node_id == 1
                && p.connection == "Connected"
                && p.volumes[0].replication == "Established"
        }) && s.volumes[0].disk == "UpToDate"
    })
    .await;
    assert_eq!(&cluster.on_disk(2, 8 << 20, missed.len())[..], &missed[..]);
    for r in [&b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_volume_not_known_to_be_zeroed_gets_a_full_initial_sync() {
    // Thick backing volumes hold whatever was on the disk: one member's data is declared the
    // first generation and the other disk is made the same, before anything is written.
    let mut cluster = Cluster::new(2, 1);
    cluster.new_volume = false;
    for (node, seed) in [(0usize, 7u8), (1, 99)] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(cluster.members[node].backing.as_ref().unwrap())
            .unwrap()
            .write_all_at(&pattern(seed, USABLE as usize), 0)
            .unwrap();
    }
    let (a, b, c) = up_three(&cluster).await;
    for (r, name) in [(&a, "a"), (&b, "b"), (&c, "the diskless member")] {
        wait(r, &format!("{name} in sync"), |s| all_up_to_date(s, 2)).await;
    }
    assert!(
        cluster.on_disk(0, 0, USABLE as usize) == cluster.on_disk(1, 0, USABLE as usize),
        "the two disks differ after the initial sync"
    );
    // Usable from the diskless member, and on both disks.
    let volume = c.volumes()[&0].clone();
    let data = pattern(3, 256 << 10);
    volume.write(4 << 20, data.clone(), true).await.unwrap();
    for node in [0, 1] {
        assert_eq!(&cluster.on_disk(node, 4 << 20, data.len())[..], &data[..]);
    }
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_copy_of_a_new_volume_not_known_to_be_zeroed_is_up_to_date() {
    let mut cluster = Cluster::new(1, 0);
    cluster.new_volume = false;
    let a = cluster.up(0).await;
    wait(&a, "UpToDate", |s| s.volumes[0].disk == "UpToDate").await;
    a.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_new_members_meeting_at_once_agree_on_one_first_generation() {
    // Each pair meets as two new volumes; only one member may declare the first generation
    // (skipping the initial sync), or the pairs declare different ones and the third pair
    // finds unrelated data.
    for attempt in 0..6 {
        let cluster = Cluster::new(3, 0);
        let (a, b, c) = tokio::join!(cluster.up(0), cluster.up(1), cluster.up(2));
        for (r, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
            wait(r, &format!("attempt {attempt}: {name} in sync"), |s| {
                all_up_to_date(s, 2) && no_peer_standalone(s)
            })
            .await;
        }
        let first = current_generation_on_disk(&cluster, 0);
        for node in [1, 2] {
            assert_eq!(
                current_generation_on_disk(&cluster, node),
                first,
                "attempt {attempt}: node {node} holds another first generation"
            );
        }
        for r in [&a, &b, &c] {
            r.down().await;
        }
    }
}

fn no_peer_standalone(status: &ResourceStatus) -> bool {
    status
        .peers
        .iter()
        .all(|p| !p.connection.starts_with("StandAlone"))
}

/// The current generation a member's metadata holds on its disk (not its memory).
fn current_generation_on_disk(cluster: &Cluster, node_id: u8) -> ferrite_mirror::gi::Uuid {
    let file =
        std::fs::File::open(cluster.members[node_id as usize].backing.as_ref().unwrap()).unwrap();
    ferrite_mirror::metadata::read_superblock(&file, USABLE)
        .unwrap()
        .generations
        .current
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_records_the_primary_s_new_generation_before_it_acknowledges_its_writes() {
    // a (Primary) loses c and starts a new generation for the writes c misses. b must not
    // acknowledge one of them before its own metadata records that generation: a crash of b
    // in between would leave it on the old generation with the new data, equal by its
    // identifiers to c, which does not have that data. Many writes at once, so that some race
    // the one that starts the generation. And c, back, is resynced only what it missed.
    let mut cluster = Cluster::new(3, 0);
    // A full resync of the volume would take 8 s at this rate, the changed blocks a few ms.
    cluster.c_max_rate_kib = 8 << 10;
    let (a, b, mut c) = up_three(&cluster).await;
    wait(&a, "all in sync", |s| all_up_to_date(s, 2)).await;
    let volume = a.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    for round in 0..8u8 {
        volume
            .write(0, pattern(round, 64 << 10), false)
            .await
            .unwrap();
        // c has flushed what it acknowledged: its leaving starts exactly one generation.
        settle_peer_flush().await;
        let before = volume.backing().unwrap().generations().current;
        c.down().await;
        wait(&a, "c gone", |s| {
            s.peers
                .iter()
                .all(|p| p.node_id != 2 || p.connection != "Connected")
        })
        .await;
        // Checked when the first write completes: b's metadata must hold the generation by
        // then (the rest of the writes would give a late record time to land).
        let mut writes: futures::stream::FuturesUnordered<_> = (0..32u64)
            .map(|i| {
                let volume = volume.clone();
                async move {
                    volume
                        .write(
                            (1 << 20) + i * (128 << 10),
                            pattern(round ^ i as u8, 4096),
                            false,
                        )
                        .await
                }
            })
            .collect();
        writes.next().await.unwrap().unwrap();
        let on_b = current_generation_on_disk(&cluster, 1);
        while let Some(outcome) = writes.next().await {
            outcome.unwrap();
        }
        let started = volume.backing().unwrap().generations().current;
        assert_ne!(started, before, "round {round}: a started no generation");
        assert_eq!(
            on_b, started,
            "round {round}: b acknowledged a write of a generation its metadata does not record"
        );
        // Back, c gets only the blocks written without it, whichever peer it meets first: a
        // bitmap resync from a replaces a full one from b (which holds no bitmap toward c).
        c = cluster.up(2).await;
        if let Err(status) = c
            .wait_for(Duration::from_secs(3), |s| all_up_to_date(s, 2))
            .await
        {
            panic!("round {round}: c not back in sync within 3 s (a full resync?): {status:#?}");
        }
    }
    ferrite_block::Volume::closed(volume.as_ref());
    for r in [&a, &b, &c] {
        r.down().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_tiebreaker_writes_go_on_when_a_replica_dies_and_a_lone_replica_stops() {
    let cluster = Cluster::new(2, 1);
    let (a, b, c) = up_three(&cluster).await;
    wait(&a, "all in sync", |s| all_up_to_date(s, 2)).await;
    let volume = a.volumes()[&0].clone();
    volume.write(0, pattern(4, 64 << 10), false).await.unwrap();
    // b dies: a and the tiebreaker are a majority; writes go on.
    b.down().await;
    wait(&a, "b gone", |s| s.peers[0].connection != "Connected").await;
    volume
        .write(1 << 20, pattern(5, 64 << 10), false)
        .await
        .unwrap();
    assert!(a.status().quorum);
    // The tiebreaker goes too: a alone has no quorum and its writes fail.
    c.down().await;
    wait(&a, "c gone", |s| !s.quorum).await;
    let error = volume
        .write(2 << 20, pattern(6, 4096), false)
        .await
        .unwrap_err();
    assert!(matches!(error, IoError::Io(_)), "{error}");
    a.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_wrong_secret_gets_nothing() {
    let mut cluster = Cluster::new(2, 0);
    let a = cluster.up(0).await;
    cluster.secret = "not the secret".into();
    let b = cluster.up(1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a.status().peers[0].connection, "Connecting");
    assert_eq!(b.status().peers[0].connection, "Connecting");
    a.down().await;
    b.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_whose_resource_is_down_refuses_every_request() {
    // A frontend can outlive its resource (a block device still mounted at a forced down): its
    // requests must fail, not reach the disk behind the bitmaps' back.
    let cluster = Cluster::new(1, 0);
    let a = cluster.up(0).await;
    wait(&a, "a lone new volume is UpToDate", |s| {
        s.volumes[0].disk == "UpToDate"
    })
    .await;
    let volume = a.volumes()[&0].clone();
    let written = pattern(7, 4096);
    volume.write(0, written.clone(), false).await.unwrap();
    a.down().await;
    assert!(matches!(volume.read(0, 4096).await, Err(IoError::Shutdown)));
    let refused = volume.write(0, pattern(8, 4096), false).await;
    assert!(matches!(refused, Err(IoError::Shutdown)), "{refused:?}");
    assert!(matches!(volume.flush().await, Err(IoError::Shutdown)));
    assert_eq!(&cluster.on_disk(0, 0, 4096)[..], &written[..]);
    // And it no longer holds the backing device open: the satellite deletes it next (an open
    // descriptor kept a deleted volume's loop device attached).
    let backing = cluster.members[0].backing.clone().unwrap();
    assert_eq!(
        open_descriptors_of(&backing),
        0,
        "{} is still open",
        backing.display()
    );
    drop(volume);
}

/// How many of this process's descriptors refer to `path`.
fn open_descriptors_of(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demotes_only_once_its_peers_flushed_its_writes() {
    // Demotion hands the volume on (another Primary, a snapshot of a replica, the file below a
    // loop device): every replica flushed what it acknowledged first, so nothing is left that
    // a peer's power loss could take and nobody would resync.
    let (cluster, a, b, volume) = two_in_sync_opened_on_the_first().await;
    let data = pattern(21, 256 << 10);
    volume.write(4 << 20, data.clone(), false).await.unwrap();
    ferrite_block::Volume::closed(volume.as_ref());
    wait(&a, "a demoted", |s| s.role == "Secondary").await;
    // Gone at once: had the demotion not waited for b's flush, its write would be recorded
    // as unflushed toward b (the periodic flush comes only after PEER_FLUSH_INTERVAL).
    b.down().await;
    wait(&a, "b is gone", |s| s.peers[0].connection != "Connected").await;
    let status = a.status();
    assert_eq!(
        status.peers[0].volumes[0].out_of_sync_kib, 0,
        "b flushed before a demoted: {status:#?}"
    );
    assert_eq!(&cluster.on_disk(1, 4 << 20, data.len())[..], &data[..]);
    a.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_peer_acknowledged_but_never_flushed_are_resynced_to_it() {
    // A peer acknowledges a write once its backing device completed it, which (like a disk
    // with a volatile cache) makes it durable only with the peer's next flush. A peer that
    // goes away before that flush may have lost the write (a power loss takes its page cache):
    // the Primary marks it out of sync toward that peer, in a generation the peer does not
    // hold, so the peer gets it again when it is back. A write the peer flushed is not resent.
    let (cluster, a, b, volume) = two_in_sync_opened_on_the_first().await;

    let flushed = pattern(11, 128 << 10);
    volume.write(0, flushed.clone(), false).await.unwrap();
    settle_peer_flush().await;
    let unflushed = pattern(12, 256 << 10);
    volume
        .write(4 << 20, unflushed.clone(), false)
        .await
        .unwrap();
    let fua = pattern(13, 64 << 10);
    volume.write(8 << 20, fua.clone(), true).await.unwrap();
    b.down().await;
    wait(&a, "b is gone", |s| s.peers[0].connection != "Connected").await;
    let status = a.status();
    assert_eq!(
        status.peers[0].volumes[0].out_of_sync_kib, 256,
        "only the write b acknowledged and never flushed is to be resent: {status:#?}"
    );
    // a does not write again before b is back: the generation that makes b a resync target
    // is started anyway (a two-member resource without quorum rules confirms at once).
    tokio::time::sleep(Duration::from_millis(200)).await;

    // b lost what it had not flushed (its disk is overwritten here); it comes back and gets
    // the write again.
    zero_on_disk(&cluster, 1, 4 << 20, unflushed.len());
    let b = cluster.up(1).await;
    wait(&b, "b resynced", |s| all_up_to_date(s, 1)).await;
    wait(&a, "a sees b in sync", |s| {
        all_up_to_date(s, 1) && s.peers[0].volumes[0].out_of_sync_kib == 0
    })
    .await;
    assert_eq!(
        &cluster.on_disk(1, 4 << 20, unflushed.len())[..],
        &unflushed[..]
    );
    assert_eq!(&cluster.on_disk(1, 0, flushed.len())[..], &flushed[..]);
    assert_eq!(&cluster.on_disk(1, 8 << 20, fua.len())[..], &fua[..]);
    ferrite_block::Volume::closed(volume.as_ref());
    b.down().await;
    a.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_disk_is_toggled_keeps_its_peers_until_it_restarts() {
    // `resource toggle-disk` on a diskless Primary reaches every member at about the same
    // time. The member itself restarts only once its device is released; were its peers to
    // drop their links to it at once, the Primary would write (or only have writes
    // unflushed) without them and outdate a replica that never missed anything.
    let cluster = Cluster::new(2, 1);
    let (a, b, c) = two_disks_and_a_diskless_member(&cluster).await;
    let volume = c.volumes()[&0].clone();
    ferrite_block::Volume::opened(volume.as_ref());
    let first = pattern(41, 128 << 10);
    volume.write(0, first.clone(), false).await.unwrap();
    wait(&c, "c is Primary", |s| s.role == "Primary").await;

    // The peers learn that c gets a disk while c is still Primary and in use.
    for (resource, node_id) in [(&a, 0u8), (&b, 1u8)] {
        let mut config = cluster.config(node_id);
        for peer in &mut config.peers {
            if peer.node_id == 2 {
                peer.diskless = false;
            }
        }
        resource.adjust(config).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = pattern(42, 128 << 10);
    volume.write(4 << 20, second.clone(), true).await.unwrap();
    let status = c.status();
    assert!(
        status.peers.iter().all(|p| p.connection == "Connected"),
        "the Primary kept both peers: {status:#?}"
    );
    for (name, resource) in [("a", &a), ("b", &b)] {
        let status = resource.status();
        assert_eq!(
            status.volumes[0].disk, "UpToDate",
            "{name} missed nothing and is not Outdated: {status:#?}"
        );
    }
    ferrite_block::Volume::closed(volume.as_ref());
    wait(&c, "c demoted", |s| s.role == "Secondary").await;
    c.down().await;
    for (name, resource) in [("a", &a), ("b", &b)] {
        wait(resource, "c gone", |s| {
            s.peers
                .iter()
                .all(|p| p.node_id != 2 || p.connection != "Connected")
        })
        .await;
        let status = resource.status();
        assert_eq!(
            status.volumes[0].disk, "UpToDate",
            "{name} is UpToDate after the Primary left: {status:#?}"
        );
    }
    assert_eq!(&cluster.on_disk(0, 4 << 20, second.len())[..], &second[..]);
    assert_eq!(&cluster.on_disk(1, 4 << 20, second.len())[..], &second[..]);
    for r in [&a, &b] {
        r.down().await;
    }
}
