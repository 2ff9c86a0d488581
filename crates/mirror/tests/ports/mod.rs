//! Ports for the members of a test resource, shared by the test binaries of this crate.

/// A free port on 127.0.0.1 below the kernel's ephemeral range (32768 and up): a port taken
/// with bind(0) and released can be taken by another process's outgoing connection before the
/// member binds it. Each process walks its own sequence through 20000–31999, so test binaries
/// running at once rarely try the same port, and a port that is taken is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = u64::from(std::process::id()) * 7919;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((base + n * 104_729) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
