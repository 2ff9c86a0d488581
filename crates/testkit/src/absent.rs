//! Addresses for nodes whose satellite is never there.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Result;

/// A loopback address held for a node whose satellite never answers: every connection is
/// accepted and closed at once, so the controller sees the node OFFLINE within milliseconds
/// and keeps it so. Holding the port matters: a merely unused port could be taken meanwhile by
/// another test's satellite, which would then receive this cluster's desired state.
pub struct AbsentSatellite {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AbsentSatellite {
    pub fn start() -> Result<AbsentSatellite> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for connection in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                drop(connection);
            }
        });
        Ok(AbsentSatellite {
            address,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AbsentSatellite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
