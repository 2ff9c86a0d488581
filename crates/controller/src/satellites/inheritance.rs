//! `DrbdOptions/*` inheritance as LINSTOR's DRBD layer resolves it when it writes a member's
//! resource file: which property containers feed which part of the file, nearest first. Each
//! part is a chain of levels; the first level of a chain that sets an option gives its value.
//!
//! | part of a member's file | options | levels, nearest first |
//! |---|---|---|
//! | `handlers`, `options`, `net`, `disk` | all sections | resource, resource definition, resource group, node, controller ([`MEMBER`]) |
//! | a volume's `disk` | `Disk/*` | resource, volume definition, volume group, resource definition, resource group, node, controller ([`VOLUME_DISK`]) |
//! | a connection's `net` | `Net/*` | resource connection, resource definition, node connection, resource group, controller ([`CONNECTION_NET`]) |
//! | a connection's `disk` | `PeerDevice/*` | with a resource connection: resource connection, resource definition, resource group ([`CONNECTION_PEER_DEVICE`]); without one: [`MEMBER`] |
//!
//! A later part of the file wins over an earlier one in DRBD (a volume's `disk` over the
//! resource's, a connection's `net` over the resource's), so a member's effective value can
//! come from a level its own chain puts lower: a resource group's `Net/*` option, written in
//! every connection's `net`, wins over the resource's own, as it does under LINSTOR. LINSTOR
//! also has a volume level above the resource for a volume's `disk`; Ferrite keeps no
//! properties on a resource's volumes.
//!
//! Owns the chains, resolving them for one member ([`Levels`]), and which members a change at
//! one level reaches ([`reaches`]); not the protocol shapes (`super::desired`).

use std::collections::{BTreeMap, BTreeSet};

use ferrite_types::rest::Props;
use ferrite_types::{NodeName, VolumeNumber};

use crate::model::{Cluster, Resource, ResourceDefinition, VolumeDefinition};

pub use crate::app::properties::DRBD_OPTIONS_PREFIX;

/// A property container that can hold `DrbdOptions/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Resource,
    VolumeDefinition,
    VolumeGroup,
    ResourceDefinition,
    ResourceGroup,
    Node,
    Controller,
    ResourceConnection,
    NodeConnection,
}

impl Level {
    const COUNT: usize = 9;

    fn index(self) -> usize {
        self as usize
    }
}

use Level::*;

/// A member's `handlers`, `options`, `net` and `disk` sections (and MIRROR's options).
pub const MEMBER: &[Level] = &[
    Resource,
    ResourceDefinition,
    ResourceGroup,
    Node,
    Controller,
];

/// A volume's `disk` section.
pub const VOLUME_DISK: &[Level] = &[
    Resource,
    VolumeDefinition,
    VolumeGroup,
    ResourceDefinition,
    ResourceGroup,
    Node,
    Controller,
];

/// A connection's `net` section.
pub const CONNECTION_NET: &[Level] = &[
    ResourceConnection,
    ResourceDefinition,
    NodeConnection,
    ResourceGroup,
    Controller,
];

/// A connection's `disk` (peer-device) section, when a resource connection joins the two
/// members; without one the connection takes the member's ([`MEMBER`]).
pub const CONNECTION_PEER_DEVICE: &[Level] =
    &[ResourceConnection, ResourceDefinition, ResourceGroup];

/// The DRBD option a property sets, by its DRBD name: `DrbdOptions/<Section>/<option>` →
/// `<Section>/<option>`. Keys without a section (`DrbdOptions/auto-quorum`,
/// `DrbdOptions/auto-add-quorum-tiebreaker`) are the controller's own settings and reach no
/// satellite, nor does any property outside `DrbdOptions/`.
pub fn replication_option(key: &str) -> Option<&str> {
    key.strip_prefix(DRBD_OPTIONS_PREFIX)
        .filter(|name| name.contains('/'))
}

/// The section of a DRBD name (`Net/protocol` → `Net`).
fn section(name: &str) -> &str {
    name.split_once('/').map_or(name, |(section, _)| section)
}

/// The property containers one member reads, by level; a level the member lacks is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels<'a> {
    props: [Option<&'a Props>; Level::COUNT],
}

impl<'a> Levels<'a> {
    /// The levels of `resource`'s own chain ([`MEMBER`]).
    pub fn member(
        cluster: &'a Cluster,
        rd: &'a ResourceDefinition,
        resource: &'a Resource,
    ) -> Self {
        let mut levels = Levels::default();
        levels.props[Resource.index()] = Some(&resource.props);
        levels.props[ResourceDefinition.index()] = Some(&rd.props);
        levels.props[ResourceGroup.index()] = cluster
            .resource_groups
            .get(&rd.resource_group)
            .map(|g| &g.props);
        levels.props[Node.index()] = cluster.node(&resource.node).map(|n| &n.props);
        levels.props[Controller.index()] = Some(&cluster.props);
        levels
    }

    /// With the levels of one of the definition's volumes.
    pub fn with_volume(
        mut self,
        cluster: &'a Cluster,
        rd: &'a ResourceDefinition,
        vd: &'a VolumeDefinition,
    ) -> Self {
        self.props[VolumeDefinition.index()] = Some(&vd.props);
        self.props[VolumeGroup.index()] = cluster
            .resource_groups
            .get(&rd.resource_group)
            .and_then(|g| g.volume_groups.get(&vd.number))
            .map(|vg| &vg.props);
        self
    }

    /// With the levels of the connection between `local` and `peer`.
    pub fn with_connection(
        mut self,
        cluster: &'a Cluster,
        rd: &'a ResourceDefinition,
        local: &NodeName,
        peer: &NodeName,
    ) -> Self {
        self.props[ResourceConnection.index()] = resource_connection(cluster, rd, local, peer);
        self.props[NodeConnection.index()] = node_connection(cluster, local, peer);
        self
    }

    pub fn get(&self, level: Level) -> Option<&'a Props> {
        self.props[level.index()]
    }

    /// The chain of a connection's `disk` section: [`CONNECTION_PEER_DEVICE`] where a resource
    /// connection joins the two members, else [`MEMBER`].
    pub fn peer_device_chain(&self) -> &'static [Level] {
        if self.get(ResourceConnection).is_some() {
            CONNECTION_PEER_DEVICE
        } else {
            MEMBER
        }
    }

    /// The options of `chain` in `sections` (all when `None`), by DRBD name: each from the
    /// nearest level that sets it.
    pub fn resolve(&self, chain: &[Level], sections: Option<&[&str]>) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        for level in chain.iter().rev() {
            let Some(props) = self.get(*level) else {
                continue;
            };
            for (key, value) in props {
                if let Some(name) = replication_option(key)
                    && sections.is_none_or(|wanted| wanted.contains(&section(name)))
                {
                    options.insert(name.to_string(), value.clone());
                }
            }
        }
        options
    }

    /// Whether a change of property `key` at `level` changes what `chain` resolves to: the
    /// chain reads `level`, and no nearer level sets `key`.
    fn feels(&self, chain: &[Level], level: Level, key: &str) -> bool {
        match chain.iter().position(|l| *l == level) {
            None => false,
            Some(at) => !chain[..at]
                .iter()
                .any(|nearer| self.get(*nearer).is_some_and(|p| p.contains_key(key))),
        }
    }
}

/// The properties of the resource connection between the members of `rd` on `a` and `b`.
fn resource_connection<'a>(
    cluster: &'a Cluster,
    rd: &ResourceDefinition,
    a: &NodeName,
    b: &NodeName,
) -> Option<&'a Props> {
    if cluster.resource_connections.is_empty() {
        return None;
    }
    let (a, b) = crate::model::Connection::key(a, b);
    cluster
        .resource_connections
        .get(&(rd.name.clone(), a, b))
        .map(|c| &c.props)
}

/// The properties of the node connection between `a` and `b`.
fn node_connection<'a>(cluster: &'a Cluster, a: &NodeName, b: &NodeName) -> Option<&'a Props> {
    if cluster.node_connections.is_empty() {
        return None;
    }
    cluster
        .node_connections
        .get(&crate::model::Connection::key(a, b))
        .map(|c| &c.props)
}

/// Where a change happened: a level, and for a volume group or volume definition its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Controller,
    Node,
    ResourceGroup,
    VolumeGroup(VolumeNumber),
}

/// Whether a change of the properties `keys` at `changed` (the member's node, its
/// definition's group or one of its volume groups, the controller) changes what `resource` is
/// sent: some part of its file reads that level for the key's section and no nearer level
/// sets the key. Keys that are no DRBD option reach nothing.
pub fn reaches(
    cluster: &Cluster,
    rd: &ResourceDefinition,
    resource: &Resource,
    changed: Changed,
    keys: &BTreeSet<&str>,
) -> bool {
    let member = Levels::member(cluster, rd, resource);
    let level = match changed {
        Changed::Controller => Controller,
        Changed::Node => Node,
        Changed::ResourceGroup => ResourceGroup,
        Changed::VolumeGroup(_) => VolumeGroup,
    };
    let peers = || {
        rd.resources
            .values()
            .filter(|peer| peer.node != resource.node && !peer.is_deleting())
    };
    keys.iter().any(|key| {
        let Some(name) = replication_option(key) else {
            return false;
        };
        if member.feels(MEMBER, level, key) {
            return true;
        }
        match section(name) {
            "Disk" => rd
                .volume_definitions
                .values()
                .filter(|vd| match changed {
                    Changed::VolumeGroup(number) => vd.number == number,
                    _ => true,
                })
                .any(|vd| {
                    member
                        .with_volume(cluster, rd, vd)
                        .feels(VOLUME_DISK, level, key)
                }),
            "Net" => peers().any(|peer| {
                member
                    .with_connection(cluster, rd, &resource.node, &peer.node)
                    .feels(CONNECTION_NET, level, key)
            }),
            "PeerDevice" => peers().any(|peer| {
                let levels = member.with_connection(cluster, rd, &resource.node, &peer.node);
                levels.feels(levels.peer_device_chain(), level, key)
            }),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    //! Every pair of levels of every chain: the nearer one's value is resolved, and a change at
    //! the farther one is felt only while the nearer one does not set the option.

    use super::*;

    const ALL: [Level; Level::COUNT] = [
        Resource,
        VolumeDefinition,
        VolumeGroup,
        ResourceDefinition,
        ResourceGroup,
        Node,
        Controller,
        ResourceConnection,
        NodeConnection,
    ];

    /// An option of each section a chain is for.
    const CHAINS: [(&str, &[Level], &str); 5] = [
        ("member", MEMBER, "Resource/quorum"),
        ("member", MEMBER, "Net/max-buffers"),
        ("volume disk", VOLUME_DISK, "Disk/al-extents"),
        ("connection net", CONNECTION_NET, "Net/ping-timeout"),
        (
            "connection peer-device",
            CONNECTION_PEER_DEVICE,
            "PeerDevice/c-max-rate",
        ),
    ];

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs
            .iter()
            .map(|(k, v)| (format!("{DRBD_OPTIONS_PREFIX}{k}"), v.to_string()))
            .collect()
    }

    fn levels<'a>(set: &[(Level, &'a Props)]) -> Levels<'a> {
        let mut levels = Levels::default();
        for (level, props) in set {
            levels.props[level.index()] = Some(props);
        }
        levels
    }

    #[test]
    fn the_chains_are_linstors() {
        assert_eq!(
            MEMBER,
            [
                Resource,
                ResourceDefinition,
                ResourceGroup,
                Node,
                Controller
            ]
        );
        assert_eq!(
            VOLUME_DISK,
            [
                Resource,
                VolumeDefinition,
                VolumeGroup,
                ResourceDefinition,
                ResourceGroup,
                Node,
                Controller
            ]
        );
        assert_eq!(
            CONNECTION_NET,
            [
                ResourceConnection,
                ResourceDefinition,
                NodeConnection,
                ResourceGroup,
                Controller
            ]
        );
        assert_eq!(
            CONNECTION_PEER_DEVICE,
            [ResourceConnection, ResourceDefinition, ResourceGroup]
        );
    }

    #[test]
    fn of_every_pair_of_levels_the_nearer_wins() {
        for (what, chain, option) in CHAINS {
            let section = option.split_once('/').unwrap().0;
            for (i, nearer) in chain.iter().enumerate() {
                for farther in &chain[i + 1..] {
                    let near_props = props(&[(option, "near")]);
                    let far_props = props(&[(option, "far")]);
                    let both = levels(&[(*nearer, &near_props), (*farther, &far_props)]);
                    assert_eq!(
                        both.resolve(chain, Some(&[section]))[option],
                        "near",
                        "{what}: {nearer:?} over {farther:?}"
                    );
                    let key = format!("{DRBD_OPTIONS_PREFIX}{option}");
                    assert!(
                        !both.feels(chain, *farther, &key),
                        "{what}: a change at {farther:?} under {nearer:?}'s value"
                    );
                    assert!(
                        both.feels(chain, *nearer, &key),
                        "{what}: a change at {nearer:?}"
                    );
                    let alone = levels(&[(*farther, &far_props)]);
                    assert_eq!(
                        alone.resolve(chain, Some(&[section]))[option],
                        "far",
                        "{what}: {farther:?} alone"
                    );
                    assert!(
                        alone.feels(chain, *farther, &key),
                        "{what}: {farther:?} alone"
                    );
                }
            }
            for level in ALL.iter().filter(|l| !chain.contains(l)) {
                let set = props(&[(option, "elsewhere")]);
                let outside = levels(&[(*level, &set)]);
                assert!(
                    outside.resolve(chain, None).is_empty(),
                    "{what} does not read {level:?}"
                );
            }
        }
    }

    #[test]
    fn a_section_takes_only_its_own_options_and_no_controller_settings() {
        let set = props(&[
            ("Disk/al-extents", "6007"),
            ("Net/protocol", "A"),
            ("auto-quorum", "io-error"),
        ]);
        let levels = levels(&[(Controller, &set)]);
        assert_eq!(
            levels.resolve(VOLUME_DISK, Some(&["Disk"])),
            BTreeMap::from([("Disk/al-extents".to_string(), "6007".to_string())])
        );
        assert_eq!(levels.resolve(MEMBER, None).len(), 2);
    }

    #[test]
    fn a_resource_connection_gives_a_connection_linstors_peer_device_chain() {
        let connection = Props::new();
        assert_eq!(Levels::default().peer_device_chain(), MEMBER);
        assert_eq!(
            levels(&[(ResourceConnection, &connection)]).peer_device_chain(),
            CONNECTION_PEER_DEVICE
        );
    }
}
