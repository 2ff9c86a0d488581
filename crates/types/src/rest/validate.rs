//! Range checks of request bodies that need nothing but the body.
//!
//! The controller's REST layer runs [`Validate::validate`] on every request body right after
//! parsing it, before the request reaches the object model, so a number outside its range
//! (`crate::limits`) is refused with its own `FAIL_INVLD_*` code even where Ferrite only keeps
//! the value (DRBD minors, ports, node ids). Rules that need the cluster (names that must
//! exist, sizes that must fit) are the controller's.

use std::ops::RangeInclusive;

use crate::api_call_rc::code;
use crate::limits;
use crate::rest::{
    AutoPlaceRequest, AutoSelectFilter, NetInterface, Node, NodeModify, PropsModify,
    ResourceCreate, ResourceDefinitionCreate, ResourceDefinitionModify, ResourceGroup,
    ResourceGroupModify, ResourceGroupSpawn, ResourceMakeAvailable, ResourceModify, StoragePool,
    ToggleDiskRequest, VolumeDefinitionCreate, VolumeDefinitionModify, VolumeGroup,
    VolumeGroupModify,
};

/// A value in a request body that is outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {field} {value}.")]
pub struct InvalidValue {
    /// The `FAIL_INVLD_*` code to answer with.
    pub code: u64,
    /// The body field, as the client spells it.
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
    /// What to send instead.
    pub correction: String,
}

/// A request body that can check itself.
pub trait Validate {
    /// The first value out of range, if any.
    fn validate(&self) -> Result<(), InvalidValue>;
}

impl<T: Validate> Validate for Vec<T> {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.iter().try_for_each(Validate::validate)
    }
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.iter().try_for_each(Validate::validate)
    }
}

/// Refuses `value` unless it lies in `range`.
fn in_range(
    code: u64,
    field: &'static str,
    value: Option<i32>,
    range: RangeInclusive<i32>,
    meaning: &str,
) -> Result<(), InvalidValue> {
    match value {
        Some(value) if !range.contains(&value) => Err(InvalidValue {
            code,
            field,
            value: value.to_string(),
            reason: format!(
                "{meaning} lies between {} and {}",
                range.start(),
                range.end()
            ),
            correction: format!(
                "Give {field} between {} and {}, or leave it out.",
                range.start(),
                range.end()
            ),
        }),
        _ => Ok(()),
    }
}

fn peer_slots(field: &'static str, value: Option<i32>) -> Result<(), InvalidValue> {
    in_range(
        code::FAIL_INVLD_REQUEST,
        field,
        value,
        limits::DRBD_PEER_SLOTS,
        "a DRBD resource's number of peer slots",
    )
}

fn tcp_port(field: &'static str, value: Option<i32>) -> Result<(), InvalidValue> {
    in_range(
        code::FAIL_INVLD_TCP_PORT,
        field,
        value,
        limits::TCP_PORT,
        "a TCP port",
    )
}

fn tcp_port_count(field: &'static str, value: Option<i32>) -> Result<(), InvalidValue> {
    in_range(
        code::FAIL_INVLD_TCP_PORT,
        field,
        value,
        limits::TCP_PORT_COUNT,
        "the number of TCP ports of a resource",
    )
}

/// Bodies whose values are all checked by the controller against the cluster.
macro_rules! nothing_to_check {
    ($($body:ty),+ $(,)?) => {
        $(impl Validate for $body {
            fn validate(&self) -> Result<(), InvalidValue> {
                Ok(())
            }
        })+
    };
}

nothing_to_check!(
    crate::rest::OrphanRef,
    crate::rest::DatabaseBackupRequest,
    Node,
    NetInterface,
    NodeModify,
    PropsModify,
    StoragePool,
    VolumeGroup,
    VolumeGroupModify,
    VolumeDefinitionModify,
    ResourceModify,
    ResourceMakeAvailable,
    ToggleDiskRequest,
    crate::rest::Snapshot,
    crate::rest::CreateMultiSnapshotRequest,
    crate::rest::SnapshotRestore,
    crate::rest::SnapshotRollback,
    crate::rest::ResourceDefinitionCloneRequest,
    crate::rest::NodeEvacuate,
    crate::rest::NodeRestore,
    crate::rest::PhysicalStorageCreate,
);

impl Validate for crate::rest::ResourceGroupAdjust {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()
    }
}

impl Validate for AutoSelectFilter {
    fn validate(&self) -> Result<(), InvalidValue> {
        in_range(
            code::FAIL_INVLD_PLACE_COUNT,
            "place_count",
            self.place_count,
            limits::PLACE_COUNT,
            "a resource's number of diskful replicas",
        )?;
        in_range(
            code::FAIL_INVLD_PLACE_COUNT,
            "additional_place_count",
            self.additional_place_count,
            limits::ADDITIONAL_PLACE_COUNT,
            "the number of diskful replicas to add",
        )?;
        tcp_port_count("port_count", self.port_count)?;
        for (key, count) in self.x_replicas_on_different_map.iter().flatten() {
            in_range(
                code::FAIL_INVLD_CONF,
                "x_replicas_on_different_map",
                Some(*count),
                limits::REPLICAS_PER_VALUE,
                &format!("the number of replicas per value of '{key}'"),
            )?;
        }
        if let Some(factor) = self.overprovision
            && factor < 0.0
        {
            return Err(InvalidValue {
                code: code::FAIL_INVLD_CONF,
                field: "overprovision",
                value: factor.to_string(),
                reason: "an overprovisioning factor is not negative".to_string(),
                correction: "Give overprovision as 0 or more (1.0 means no overprovisioning), \
                             or leave it out."
                    .to_string(),
            });
        }
        Ok(())
    }
}

impl Validate for ResourceGroup {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()?;
        peer_slots("peer_slots", self.peer_slots)
    }
}

impl Validate for ResourceGroupModify {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()?;
        peer_slots("peer_slots", self.peer_slots)
    }
}

impl Validate for ResourceGroupSpawn {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()?;
        peer_slots("peer_slots", self.peer_slots)
    }
}

impl Validate for crate::rest::QuerySizeInfoRequest {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()
    }
}

impl Validate for AutoPlaceRequest {
    fn validate(&self) -> Result<(), InvalidValue> {
        self.select_filter.validate()
    }
}

impl Validate for ResourceDefinitionCreate {
    fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(volumes) = self
            .resource_definition
            .volume_definitions
            .as_ref()
            .filter(|v| !v.is_empty())
        {
            return Err(InvalidValue {
                code: code::FAIL_INVLD_REQUEST,
                field: "resource_definition.volume_definitions",
                value: format!("({} given)", volumes.len()),
                reason: "creating a resource definition creates no volume definitions".to_string(),
                correction: "Leave volume_definitions out and create each with POST \
                             /v1/resource-definitions/{resource}/volume-definitions."
                    .to_string(),
            });
        }
        tcp_port("drbd_port", self.drbd_port)?;
        peer_slots("drbd_peer_slots", self.drbd_peer_slots)
    }
}

impl Validate for ResourceDefinitionModify {
    fn validate(&self) -> Result<(), InvalidValue> {
        tcp_port("drbd_port", self.drbd_port)?;
        peer_slots("drbd_peer_slots", self.drbd_peer_slots)
    }
}

impl Validate for VolumeDefinitionCreate {
    fn validate(&self) -> Result<(), InvalidValue> {
        in_range(
            code::FAIL_INVLD_MINOR_NR,
            "drbd_minor_number",
            self.drbd_minor_number,
            limits::DRBD_MINOR_NUMBER,
            "a DRBD minor number",
        )
    }
}

impl Validate for ResourceCreate {
    fn validate(&self) -> Result<(), InvalidValue> {
        in_range(
            code::FAIL_INVLD_NODE_ID,
            "drbd_node_id",
            self.drbd_node_id,
            limits::DRBD_NODE_ID,
            "a DRBD node id",
        )?;
        tcp_port_count("drbd_tcp_port_count", self.drbd_tcp_port_count)?;
        for port in self.drbd_tcp_ports.iter().flatten() {
            tcp_port("drbd_tcp_ports", Some(*port))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume_definition(minor: i32) -> VolumeDefinitionCreate {
        VolumeDefinitionCreate {
            drbd_minor_number: Some(minor),
            ..Default::default()
        }
    }

    #[test]
    fn drbd_minor_numbers_have_twenty_bits() {
        assert!(volume_definition(0).validate().is_ok());
        assert!(volume_definition(1_048_575).validate().is_ok());
        let err = volume_definition(1_048_576).validate().unwrap_err();
        assert_eq!(err.code, code::FAIL_INVLD_MINOR_NR);
        assert_eq!(err.to_string(), "Invalid drbd_minor_number 1048576.");
        assert!(err.correction.contains("between 0 and 1048575"), "{err:?}");
        assert!(volume_definition(-1).validate().is_err());
    }

    #[test]
    fn ports_node_ids_and_peer_slots() {
        let rd = |port, slots| ResourceDefinitionCreate {
            drbd_port: port,
            drbd_peer_slots: slots,
            ..Default::default()
        };
        assert!(rd(Some(7000), Some(7)).validate().is_ok());
        assert_eq!(
            rd(Some(0), None).validate().unwrap_err().code,
            code::FAIL_INVLD_TCP_PORT
        );
        assert!(rd(Some(65_536), None).validate().is_err());
        assert!(rd(None, Some(0)).validate().is_err());
        assert!(rd(None, Some(32)).validate().is_err());
        let resource = |id, ports: Option<Vec<i32>>| ResourceCreate {
            drbd_node_id: id,
            drbd_tcp_ports: ports,
            ..Default::default()
        };
        assert!(resource(Some(31), Some(vec![7000])).validate().is_ok());
        assert_eq!(
            resource(Some(32), None).validate().unwrap_err().code,
            code::FAIL_INVLD_NODE_ID
        );
        assert!(resource(None, Some(vec![7000, -1])).validate().is_err());
        assert!(
            vec![resource(None, None), resource(Some(-1), None)]
                .validate()
                .is_err()
        );
    }

    #[test]
    fn filters() {
        let filter = |f: fn(&mut AutoSelectFilter)| {
            let mut filter = AutoSelectFilter::default();
            f(&mut filter);
            ResourceGroup {
                name: "g1".into(),
                description: None,
                props: Default::default(),
                select_filter: filter,
                uuid: None,
                peer_slots: None,
            }
            .validate()
        };
        assert!(filter(|_| {}).is_ok());
        assert!(filter(|f| f.place_count = Some(3)).is_ok());
        assert!(filter(|f| f.place_count = Some(0)).is_err());
        assert!(filter(|f| f.additional_place_count = Some(-1)).is_err());
        assert!(filter(|f| f.port_count = Some(0)).is_err());
        assert!(filter(|f| f.overprovision = Some(-0.5)).is_err());
        assert!(filter(|f| f.overprovision = Some(2.0)).is_ok());
        assert!(
            filter(|f| f.x_replicas_on_different_map = Some([("Aux/rack".into(), 33)].into()))
                .is_err()
        );
    }
}
