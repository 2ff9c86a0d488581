//! Whether a storage pool can host a volume: the rules that resource creation on a named node
//! and the autoplacer share.
//!
//! Owns each rule once, as a typed answer ([`Unfit`]): the pool's kind against the replica's
//! (diskful or diskless), the node's layers against the resource's stack, the node's providers
//! against the pool's, and the pool's free space against the volumes' size. Does not own the
//! wording: the autoplacer explains a rejection in one line per candidate (`filter`), resource
//! creation answers a REST error with a code, cause and correction. Nor which rules a caller
//! applies where they differ on purpose: see [`Space`].

use ferrite_types::{LayerKind, ProviderKind};

/// Why a pool cannot host the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// A diskful replica in a diskless pool, or a diskless one in a diskful pool.
    WrongKind {
        pool_is_diskless: bool,
    },
    /// The node's satellite does not run the pool's provider.
    ProviderUnsupported,
    /// The node's satellite does not run these layers of the stack (in the stack's order).
    LayersUnsupported(Vec<LayerKind>),
    /// The pool has not reported its free space.
    CapacityUnknown,
    TooLittleSpace {
        free_kib: u64,
        needed_kib: u64,
    },
}

/// How strictly free space is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// The autoplacer's choice: the pool must have reported at least the size free, thin or not.
    Strict,
    /// An operator naming the pool: a thin pool may be overcommitted and a pool that has not
    /// reported yet is taken at its word; only a thick pool known to be too small is refused.
    Lenient,
}

/// Whether a pool of `provider` holds a replica of the wanted kind.
pub fn kind(provider: ProviderKind, diskless: bool) -> Result<(), Unfit> {
    let pool_is_diskless = !provider.has_backing_device();
    if pool_is_diskless == diskless {
        Ok(())
    } else {
        Err(Unfit::WrongKind { pool_is_diskless })
    }
}

/// Whether a node running `supported` providers runs `provider`; `None` while the node has not
/// said (never connected), which does not refuse.
pub fn provider(supported: Option<&[ProviderKind]>, provider: ProviderKind) -> Result<(), Unfit> {
    match supported {
        Some(supported) if !supported.contains(&provider) => Err(Unfit::ProviderUnsupported),
        _ => Ok(()),
    }
}

/// Whether a node running `supported` layers runs every layer of `stack`; `None` while the node
/// has not said, which does not refuse.
pub fn layers(supported: Option<&[LayerKind]>, stack: &[LayerKind]) -> Result<(), Unfit> {
    let Some(supported) = supported else {
        return Ok(());
    };
    let missing: Vec<LayerKind> = stack
        .iter()
        .filter(|layer| !supported.contains(layer))
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unfit::LayersUnsupported(missing))
    }
}

/// Whether a diskful pool of `provider` with `free_kib` free (as reported) holds `needed_kib`.
pub fn space(
    check: Space,
    provider: ProviderKind,
    free_kib: Option<u64>,
    needed_kib: u64,
) -> Result<(), Unfit> {
    if check == Space::Lenient && provider.is_thin() {
        return Ok(());
    }
    match free_kib {
        None if check == Space::Lenient => Ok(()),
        None => Err(Unfit::CapacityUnknown),
        Some(free_kib) if free_kib < needed_kib => Err(Unfit::TooLittleSpace {
            free_kib,
            needed_kib,
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_needs_a_pool_of_its_kind() {
        assert_eq!(kind(ProviderKind::FileThin, false), Ok(()));
        assert_eq!(kind(ProviderKind::Diskless, true), Ok(()));
        assert_eq!(
            kind(ProviderKind::Diskless, false),
            Err(Unfit::WrongKind {
                pool_is_diskless: true
            })
        );
        assert_eq!(
            kind(ProviderKind::Lvm, true),
            Err(Unfit::WrongKind {
                pool_is_diskless: false
            })
        );
    }

    #[test]
    fn a_node_must_run_the_pools_provider_once_it_said_which_it_runs() {
        let supported = [ProviderKind::File, ProviderKind::FileThin];
        assert_eq!(provider(Some(&supported), ProviderKind::FileThin), Ok(()));
        assert_eq!(
            provider(Some(&supported), ProviderKind::Zfs),
            Err(Unfit::ProviderUnsupported)
        );
        assert_eq!(provider(None, ProviderKind::Zfs), Ok(()));
    }

    #[test]
    fn a_node_must_run_every_layer_once_it_said_which_it_runs() {
        let stack = [LayerKind::Drbd, LayerKind::Storage];
        assert_eq!(
            layers(Some(&[LayerKind::Drbd, LayerKind::Storage]), &stack),
            Ok(())
        );
        assert_eq!(
            layers(Some(&[LayerKind::Storage]), &stack),
            Err(Unfit::LayersUnsupported(vec![LayerKind::Drbd]))
        );
        assert_eq!(
            layers(Some(&[]), &stack),
            Err(Unfit::LayersUnsupported(vec![
                LayerKind::Drbd,
                LayerKind::Storage
            ]))
        );
        assert_eq!(layers(None, &stack), Ok(()));
    }

    #[test]
    fn the_autoplacer_wants_the_size_free_in_every_pool() {
        for provider in [ProviderKind::File, ProviderKind::FileThin] {
            assert_eq!(space(Space::Strict, provider, Some(100), 100), Ok(()));
            assert_eq!(
                space(Space::Strict, provider, Some(99), 100),
                Err(Unfit::TooLittleSpace {
                    free_kib: 99,
                    needed_kib: 100
                })
            );
            assert_eq!(
                space(Space::Strict, provider, None, 100),
                Err(Unfit::CapacityUnknown)
            );
        }
    }

    #[test]
    fn a_named_pool_is_refused_only_when_thick_and_known_too_small() {
        assert_eq!(
            space(Space::Lenient, ProviderKind::File, Some(99), 100),
            Err(Unfit::TooLittleSpace {
                free_kib: 99,
                needed_kib: 100
            })
        );
        assert_eq!(
            space(Space::Lenient, ProviderKind::File, Some(100), 100),
            Ok(())
        );
        assert_eq!(space(Space::Lenient, ProviderKind::File, None, 100), Ok(()));
        assert_eq!(
            space(Space::Lenient, ProviderKind::FileThin, Some(1), 100),
            Ok(())
        );
    }
}
