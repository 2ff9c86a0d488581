//! Draws that keep nodes started or filled together from doing their periodic work at the
//! same moment: the full pass (`reconciler`) and the journals' compaction (`journal`). On one
//! node that is harmless; on a cluster whose satellites started together (a rack after a power
//! cut, an upgrade) or share a host, it is every node's CPU and fsyncs at once, and every
//! change waits behind them.

/// A number drawn uniformly from `[0, 1)`. A fresh random seed per call is all the
/// randomness needed: no generator to keep, no crate to add.
pub fn unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (draw >> 11) as f64 / (1u64 << 53) as f64
}

/// `value` scaled by a factor drawn uniformly from `[1 - spread, 1 + spread)`.
pub fn around(value: f64, spread: f64) -> f64 {
    value * (1.0 - spread + 2.0 * spread * unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_cover_the_range_and_stay_in_it() {
        let draws: Vec<f64> = (0..1000).map(|_| around(4.0, 0.25)).collect();
        assert!(draws.iter().all(|d| (3.0..5.0).contains(d)), "{draws:?}");
        let low = draws.iter().cloned().fold(f64::MAX, f64::min);
        let high = draws.iter().cloned().fold(f64::MIN, f64::max);
        assert!(low < 3.2 && high > 4.8, "spread over {low}..{high} only");
    }
}
