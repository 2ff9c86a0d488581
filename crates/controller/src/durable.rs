//! Group commit: a change is acted on only once it is on disk, and concurrent changes share the
//! sync that puts them there.
//!
//! The store commits into its WAL without syncing it (`ferrite_store::Store::defer_syncs`).
//! Each change commits and applies in memory under the mutation lock, as before, then queues
//! what it does outside the controller ([`Publication`]: links to start, stop or redial,
//! deltas to push) and leaves the lock. Outside it, [`Durability::publish`] waits until a sync
//! of the WAL that began after the commit has returned, or runs one; then the queued
//! publications up to the revision that sync covers go out, in revision order. So the lock is
//! held for planning, the commit's write and the apply, never for a sync. Under load one sync
//! makes several changes durable, and each change waits for at most the sync under way and
//! its own.
//!
//! Nothing reaches a satellite before it is durable: deltas are pushed here, and a link that
//! sends a full state, which is built from memory and so may hold changes not yet synced,
//! waits for [`Durability::watch`] to reach its generation first (`satellites::link`). A change
//! is answered after it is published. A sync that fails leaves commits that may not be on disk,
//! and which of them cannot be known: the controller exits rather than act on them or answer
//! for them, and its next start loads what the disk holds.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferrite_proto::DesiredState;
use ferrite_store::WalSync;
use ferrite_types::NodeName;
use tokio::sync::watch;
use tracing::error;

use crate::satellites::Satellites;

/// What a committed change does outside the controller, once it is durable, in this order.
#[derive(Debug, Default)]
pub struct Publication {
    pub revision: u64,
    /// Nodes whose satellite link starts (new nodes with a satellite).
    pub start: Vec<NodeName>,
    /// Nodes whose link stops (deleted nodes).
    pub stop: Vec<NodeName>,
    /// Nodes whose link dials again (their address changed).
    pub reconnect: Vec<NodeName>,
    /// The deltas of the nodes it concerns, built when it was applied.
    pub push: Vec<(NodeName, DesiredState)>,
}

impl Publication {
    fn run(self, satellites: &Satellites) {
        for node in &self.start {
            satellites.start(node);
        }
        for node in &self.stop {
            satellites.stop(node);
        }
        for node in &self.reconnect {
            satellites.reconnect(node);
        }
        for (node, state) in self.push {
            satellites.push(&node, state);
        }
    }
}

/// The publications committed and not yet durable, in revision order.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Publication>,
    /// The revision of the last one queued.
    last: u64,
}

/// The WAL's sync, shared by the changes committed before it, and what they publish after it.
pub struct Durability {
    wal: Arc<WalSync>,
    queue: Mutex<Queue>,
    /// One sync at a time: a change that finds one under way waits for it, then runs the next
    /// if that one did not cover it.
    syncing: tokio::sync::Mutex<()>,
    /// The revision up to which every change is durable and published.
    durable: watch::Sender<u64>,
    /// Syncs run since the start.
    syncs: AtomicU64,
}

impl Durability {
    /// For a store whose commits up to `revision` are durable.
    pub fn new(wal: WalSync, revision: u64) -> Durability {
        Durability {
            wal: Arc::new(wal),
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                last: revision,
            }),
            syncing: tokio::sync::Mutex::new(()),
            durable: watch::channel(revision).0,
            syncs: AtomicU64::new(0),
        }
    }

    /// How many syncs of the WAL ran since the start.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The revision up to which every change is durable and published.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Queues what a change just committed does once durable. Called under the mutation lock,
    /// so in revision order.
    pub fn enqueue(&self, publication: Publication) {
        let mut queue = self.queue.lock().expect("publication queue lock");
        debug_assert!(
            publication.revision > queue.last,
            "revision {} queued after {}",
            publication.revision,
            queue.last
        );
        queue.last = publication.revision;
        queue.waiting.push_back(publication);
    }

    /// Returns once `revision` is durable and its publication (and every one before it) went
    /// out. Runs in a task of its own, so a caller that goes away does not leave a committed
    /// change unpublished.
    pub async fn publish(self: &Arc<Self>, revision: u64, satellites: &Satellites) {
        let this = self.clone();
        let satellites = satellites.clone();
        let published =
            tokio::spawn(async move { this.publish_now(revision, &satellites).await }).await;
        if let Err(e) = published {
            // Not reached: the task does not panic, and the runtime outlives the controller.
            error!(revision, error = %e, "publishing a change failed");
        }
    }

    async fn publish_now(&self, revision: u64, satellites: &Satellites) {
        if *self.durable.borrow() >= revision {
            return;
        }
        let _turn = self.syncing.lock().await;
        if *self.durable.borrow() >= revision {
            // The sync under way while this waited covered it.
            return;
        }
        // Everything queued so far was committed before this sync begins.
        let upto = self.queue.lock().expect("publication queue lock").last;
        let wal = self.wal.clone();
        let synced = tokio::task::spawn_blocking(move || wal.sync())
            .await
            .unwrap_or_else(|e| panic!("the WAL's sync task failed: {e}"));
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = synced {
            error!(error = %e, "the store's WAL could not be synced: the controller stops rather than act on changes that may not be on disk; its next start loads what the disk holds");
            std::process::exit(1);
        }
        let ready: Vec<Publication> = {
            let mut queue = self.queue.lock().expect("publication queue lock");
            let count = queue
                .waiting
                .iter()
                .take_while(|p| p.revision <= upto)
                .count();
            queue.waiting.drain(..count).collect()
        };
        for publication in ready {
            publication.run(satellites);
        }
        self.durable.send_replace(upto);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use ferrite_store::{DataDirLock, Store};

    use super::*;
    use crate::model::Cluster;
    use crate::satellites::Timeouts;

    /// A durability over a store in `dir` with deferred syncs, and satellites without links.
    fn durability(dir: &std::path::Path) -> (Arc<Durability>, Satellites, Store) {
        let mut store = Store::open(DataDirLock::acquire(dir).unwrap(), "cluster").unwrap();
        let wal = store.defer_syncs().unwrap();
        let durability = Arc::new(Durability::new(wal, store.revision()));
        let satellites = Satellites::new(
            Arc::new(RwLock::new(Cluster::default())),
            durability.watch(),
            Timeouts::default(),
            "test".into(),
        );
        (durability, satellites, store)
    }

    fn at(revision: u64) -> Publication {
        Publication {
            revision,
            ..Publication::default()
        }
    }

    /// One sync covers every change queued before it began: the changes that queued while a
    /// sync ran wait for the next, and a change already covered does not sync again.
    #[tokio::test]
    async fn one_sync_makes_every_change_queued_before_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (durability, satellites, _store) = durability(dir.path());
        let watch = durability.watch();
        assert_eq!(*watch.borrow(), 0);
        for revision in 1..=3 {
            durability.enqueue(at(revision));
        }
        durability.publish(1, &satellites).await;
        assert_eq!(*watch.borrow(), 3, "the sync covered all three");
        assert_eq!(durability.syncs(), 1);
        durability.publish(2, &satellites).await;
        durability.publish(3, &satellites).await;
        assert_eq!(durability.syncs(), 1, "covered changes do not sync again");

        durability.enqueue(at(4));
        assert_eq!(*watch.borrow(), 3, "queued is not durable");
        durability.publish(4, &satellites).await;
        assert_eq!((*watch.borrow(), durability.syncs()), (4, 2));
    }

    /// Many changes committing at once all become durable, with fewer syncs than changes
    /// whenever they overlap, and never more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_share_syncs_and_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (durability, satellites, _store) = durability(dir.path());
        let order = Arc::new(tokio::sync::Mutex::new(0u64));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let (durability, satellites, order) =
                (durability.clone(), satellites.clone(), order.clone());
            tasks.spawn(async move {
                // As under the mutation lock: revisions are queued in order.
                let revision = {
                    let mut last = order.lock().await;
                    *last += 1;
                    durability.enqueue(at(*last));
                    *last
                };
                durability.publish(revision, &satellites).await;
                assert!(*durability.watch().borrow() >= revision);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(*durability.watch().borrow(), 64);
        assert!(
            (1..=64).contains(&durability.syncs()),
            "{}",
            durability.syncs()
        );
    }
}
