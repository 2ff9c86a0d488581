//! An operator's explicit commands: the only way besides a deletion in the desired state to
//! remove a backing volume, and the only way to create a missing volume again.

use std::collections::BTreeSet;

use ferrite_proto::{DevicePoolSpec, NodeCommand, PhysicalDevice};
use ferrite_storage::physical;
use ferrite_types::ResourceName;
use tracing::{info, warn};

use super::{Reconciler, normalized_pool_name, resource_key};
use crate::ledger::LedgerEntry;

impl Reconciler {
    /// Carries out `command`; the answer says what was done, or why nothing was.
    pub(super) fn command(&mut self, command: NodeCommand) -> Result<String, String> {
        match command {
            NodeCommand::DeleteOrphan {
                resource,
                volume_number,
                identity,
                pool_name,
            } => self.delete_orphan(&resource, volume_number, identity, &pool_name),
            NodeCommand::RecreateMissing {
                resource,
                volume_number,
                identity,
            } => self.recreate_missing(&resource, volume_number, &identity),
            NodeCommand::RollbackSnapshot {
                resource,
                resource_uuid,
                snapshot,
                snapshot_uuid,
                volumes,
                fresh_generation,
            } => self.rollback(
                &resource,
                &resource_uuid,
                &snapshot,
                &snapshot_uuid,
                &volumes,
                fresh_generation,
            ),
            NodeCommand::ListPhysicalStorage => self.list_physical_storage(),
            NodeCommand::CreateDevicePool(spec) => self.create_device_pool(spec),
        }
    }

    /// The loop devices of the volumes this node made: they are not free disks.
    fn own_devices(&mut self) -> BTreeSet<String> {
        let report = self.converge();
        report
            .volumes
            .iter()
            .filter_map(|v| v.device_path.clone())
            .collect()
    }

    fn list_physical_storage(&mut self) -> Result<String, String> {
        let exclude = self.own_devices();
        let disks = physical::list_candidates(self.providers.runner(), &exclude)
            .map_err(|e| format!("cannot list the disks of node '{}': {e}", self.node_name))?;
        let devices: Vec<PhysicalDevice> = disks
            .into_iter()
            .map(|d| PhysicalDevice {
                device: d.device,
                size_bytes: d.size_bytes,
                rotational: d.rotational,
                model: d.model,
                serial: d.serial,
                wwn: d.wwn,
            })
            .collect();
        serde_json::to_string(&devices).map_err(|e| e.to_string())
    }

    fn create_device_pool(&mut self, spec: DevicePoolSpec) -> Result<String, String> {
        let exclude = self.own_devices();
        let pool = physical::DevicePool {
            provider_kind: spec.provider_kind,
            devices: spec.devices,
            pool_name: spec.pool_name,
        };
        info!(node = %self.node_name, pool = %pool.pool_name, kind = %pool.provider_kind, devices = ?pool.devices, "creating a device pool");
        physical::create_device_pool(
            self.providers.runner(),
            &pool,
            &exclude,
            self.providers.options().lvm_metadata_only,
        )
        .map_err(|e| format!("node '{}': {e}", self.node_name))
    }

    fn delete_orphan(
        &mut self,
        resource: &str,
        volume_number: u16,
        identity: Option<String>,
        pool_name: &str,
    ) -> Result<String, String> {
        // The orphans as of now: a volume wanted again since it was listed is not one.
        let report = self.converge();
        let orphan = report
            .orphans
            .iter()
            .find(|o| {
                resource_key(&o.resource) == resource_key(resource)
                    && o.volume_number == volume_number
                    && o.identity == identity
                    && o.pool_name == normalized_pool_name(o.provider_kind, pool_name)
            })
            .cloned()
            .ok_or_else(|| {
                format!(
                    "node '{}' has no orphan {resource}/{volume_number} in pool '{pool_name}' with {}; 'ferrite node orphans list' shows the orphans",
                    self.node_name,
                    identity.as_deref().map(|i| format!("identity {i}")).unwrap_or_else(|| "no identity".to_string())
                )
            })?;
        let entry: LedgerEntry = self
            .ledger
            .volumes
            .iter()
            .find(|e| {
                e.key.provider_kind == orphan.provider_kind
                    && e.key.pool_name == orphan.pool_name
                    && e.backing_name().as_str() == orphan.backing_name
            })
            .cloned()
            .ok_or_else(|| "the orphan left the ledger meanwhile".to_string())?;
        self.place_usable(entry.key.provider_kind, &entry.key.pool_name)
            .map_err(|why| format!("cannot delete orphan '{}': {why}", orphan.backing_name))?;
        let name = entry.backing_name();
        info!(volume = %name, pool = %entry.key.pool_name, reason = %orphan.reason, "deleting an orphaned backing volume, as the operator asked");
        self.storage_changed = true;
        self.providers
            .get(entry.key.provider_kind)
            .delete_volume(&entry.key.pool_name, &name)
            .map_err(|e| format!("could not delete orphan '{name}': {e}"))?;
        self.ledger.remove(&entry.key);
        if let Err(e) = self.persist_ledger() {
            warn!(error = %e, "could not update the ledger after deleting an orphan");
        }
        Ok(format!(
            "Deleted orphaned backing volume '{name}' ({} pool '{}') on node '{}'.",
            entry.key.provider_kind, entry.key.pool_name, self.node_name
        ))
    }

    fn recreate_missing(
        &mut self,
        resource: &str,
        volume_number: u16,
        identity: &str,
    ) -> Result<String, String> {
        let name = ResourceName::new(resource).map_err(|e| e.to_string())?;
        let wanted = self.desired.as_ref().is_some_and(|d| {
            d.resource(resource).is_some_and(|r| {
                r.volumes.iter().any(|v| {
                    v.volume_number == volume_number && v.identity == identity && r.wants_disk(v)
                })
            })
        });
        if !wanted {
            return Err(format!(
                "volume {resource}/{volume_number} with identity {identity} is not a wanted volume on node '{}'",
                self.node_name
            ));
        }
        let entry = self
            .ledger
            .volumes
            .iter()
            .find(|e| {
                e.key.resource == name
                    && e.key.volume_number.get() == volume_number
                    && e.has_identity(identity)
            })
            .cloned()
            .ok_or_else(|| {
                format!(
                    "volume {resource}/{volume_number} is not recorded on node '{}': it is not missing, it was never made (it is created as usual)",
                    self.node_name
                )
            })?;
        self.place_usable(entry.key.provider_kind, &entry.key.pool_name)
            .map_err(|why| {
                format!("its pool is not usable, so it cannot be told missing: {why}")
            })?;
        let backing = entry.backing_name();
        let exists = self
            .providers
            .get(entry.key.provider_kind)
            .volume(&entry.key.pool_name, &backing)
            .map_err(|e| e.to_string())?;
        if exists.is_some() {
            return Err(format!(
                "backing volume '{backing}' exists in pool '{}'; it is not missing",
                entry.key.pool_name
            ));
        }
        warn!(volume = %backing, pool = %entry.key.pool_name, "creating a missing volume anew and empty, as the operator asked");
        self.ledger.remove(&entry.key);
        self.persist_ledger().map_err(|e| e.to_string())?;
        Ok(format!(
            "Volume {resource}/{volume_number} on node '{}' is created anew, empty.",
            self.node_name
        ))
    }
}
