//! One method per REST call of API v1 that the controller serves.
//!
//! Reads return a [`Listing`] (typed with `ferrite_types::rest` and the body as received);
//! mutations return an [`Answer`] with the `ApiCallRc` entries, error or not. Request bodies are
//! the ones the `linstor` CLI sends for the same command: where a shared type would serialize
//! empty collections that LINSTOR's client leaves out (`props: {}`, `flags: []`), the body is
//! built here field by field from the typed parts, so the controller sees the same request
//! whichever client sent it.

use ferrite_types::rest::{
    AutoPlaceRequest, AutoSelectFilter, ControllerVersion, DatabaseBackupRequest, ErrorReport,
    NetInterface, Node, NodeModify, Orphan, OrphanRef, Props, PropsModify, ResourceDefinition,
    ResourceDefinitionModify, ResourceGroup, ResourceGroupModify, ResourceGroupSpawn,
    ResourceMakeAvailable, ResourceModify, ResourceWithVolumes, StoragePool, ToggleDiskOperation,
    ToggleDiskRequest, VolumeDefinition, VolumeDefinitionModify, VolumeGroup, VolumeGroupModify,
};
use ferrite_types::{LayerKind, NodeType, ProviderKind};
use serde_json::{Map, Value, json};

use crate::client::{ApiVersion, Client, Method, encode, query};
use crate::error::{Answer, ClientError, Listing};

/// The flag LINSTOR puts on volume groups and definitions whose size includes metadata.
pub const FLAG_GROSS_SIZE: &str = "GROSS_SIZE";

/// `node create`: a node with its first network interface.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNode {
    pub name: String,
    pub node_type: NodeType,
    pub net_interface: NetInterface,
    pub props: Props,
}

/// `storage-pool create <provider>`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStoragePool {
    pub name: String,
    pub provider_kind: ProviderKind,
    /// The volume group, thin pool, zpool or directory; `None` only for DISKLESS.
    pub driver_pool: Option<String>,
    pub shared_space: Option<String>,
    pub external_locking: bool,
}

/// `resource-group create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewResourceGroup {
    pub name: String,
    pub description: Option<String>,
    pub select_filter: AutoSelectFilter,
    pub peer_slots: Option<i32>,
}

/// `volume-group create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVolumeGroup {
    pub volume_number: Option<i32>,
    pub gross: bool,
}

/// `resource-definition create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewResourceDefinition {
    pub name: String,
    pub external_name: Option<String>,
    pub resource_group: Option<String>,
    pub layer_list: Vec<LayerKind>,
    pub port: Option<i32>,
    pub peer_slots: Option<i32>,
}

/// `volume-definition create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVolumeDefinition {
    pub size_kib: i64,
    pub volume_number: Option<i32>,
    pub minor_number: Option<i32>,
    pub gross: bool,
}

/// One resource of `resource create`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewResource {
    pub node_name: String,
    /// `DISKLESS`, `DRBD_DISKLESS`, `INACTIVE`, ...
    pub flags: Vec<String>,
    pub storage_pool: Option<String>,
    pub layer_list: Vec<LayerKind>,
    pub node_id: Option<i32>,
    pub tcp_port: Option<i32>,
}

/// Filters of the list calls; empty lists filter nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub nodes: Vec<String>,
    pub resources: Vec<String>,
    pub storage_pools: Vec<String>,
    pub resource_groups: Vec<String>,
    /// `Key=Value` or `Key`.
    pub props: Vec<String>,
}

fn insert(map: &mut Map<String, Value>, key: &str, value: impl serde::Serialize) {
    map.insert(
        key.to_string(),
        serde_json::to_value(value).expect("request parts serialize"),
    );
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("request bodies serialize")
}

/// The body of `POST /v1/nodes`.
pub fn node_body(node: &NewNode) -> Value {
    let mut body = Map::new();
    insert(&mut body, "name", &node.name);
    insert(&mut body, "type", node.node_type);
    insert(&mut body, "net_interfaces", [&node.net_interface]);
    if !node.props.is_empty() {
        insert(&mut body, "props", &node.props);
    }
    Value::Object(body)
}

/// The body of `POST /v1/nodes/{node}/storage-pools`.
pub fn storage_pool_body(pool: &NewStoragePool) -> Value {
    let mut body = Map::new();
    insert(&mut body, "storage_pool_name", &pool.name);
    insert(&mut body, "provider_kind", pool.provider_kind);
    if let Some(shared) = &pool.shared_space {
        insert(&mut body, "free_space_mgr_name", shared);
    }
    if pool.external_locking {
        insert(&mut body, "external_locking", true);
    }
    if let Some(driver_pool) = &pool.driver_pool {
        insert(
            &mut body,
            "props",
            json!({ ferrite_types::PROP_STOR_POOL_NAME: driver_pool }),
        );
    }
    Value::Object(body)
}

/// The body of `POST /v1/resource-groups`.
pub fn resource_group_body(group: &NewResourceGroup) -> Value {
    let mut body = Map::new();
    insert(&mut body, "name", &group.name);
    if let Some(description) = group.description.as_ref().filter(|d| !d.is_empty()) {
        insert(&mut body, "description", description);
    }
    insert(&mut body, "select_filter", &group.select_filter);
    if let Some(peer_slots) = group.peer_slots {
        insert(&mut body, "peer_slots", peer_slots);
    }
    Value::Object(body)
}

/// The body of `POST /v1/resource-groups/{rg}/volume-groups`.
pub fn volume_group_body(group: &NewVolumeGroup) -> Value {
    let mut body = Map::new();
    if let Some(number) = group.volume_number {
        insert(&mut body, "volume_number", number);
    }
    if group.gross {
        insert(&mut body, "flags", [FLAG_GROSS_SIZE]);
    }
    Value::Object(body)
}

/// The body of `POST /v1/resource-definitions`.
pub fn resource_definition_body(definition: &NewResourceDefinition) -> Value {
    let mut inner = Map::new();
    match &definition.external_name {
        Some(external) => insert(&mut inner, "external_name", external),
        None => insert(&mut inner, "name", &definition.name),
    }
    if !definition.layer_list.is_empty() {
        let layers: Vec<Value> = definition
            .layer_list
            .iter()
            .map(|layer| json!({ "type": layer }))
            .collect();
        insert(&mut inner, "layer_data", layers);
    }
    if let Some(group) = &definition.resource_group {
        insert(&mut inner, "resource_group_name", group);
    }
    let mut body = Map::new();
    body.insert("resource_definition".to_string(), Value::Object(inner));
    if let Some(port) = definition.port {
        insert(&mut body, "drbd_port", port);
    }
    if let Some(peer_slots) = definition.peer_slots {
        insert(&mut body, "drbd_peer_slots", peer_slots);
    }
    Value::Object(body)
}

/// The body of `POST /v1/resource-definitions/{rd}/volume-definitions`.
pub fn volume_definition_body(definition: &NewVolumeDefinition) -> Value {
    let mut inner = Map::new();
    insert(&mut inner, "size_kib", definition.size_kib);
    let flags: Vec<&str> = if definition.gross {
        vec![FLAG_GROSS_SIZE]
    } else {
        Vec::new()
    };
    insert(&mut inner, "flags", flags);
    if let Some(number) = definition.volume_number {
        insert(&mut inner, "volume_number", number);
    }
    let mut body = Map::new();
    body.insert("volume_definition".to_string(), Value::Object(inner));
    if let Some(minor) = definition.minor_number {
        insert(&mut body, "drbd_minor_number", minor);
    }
    Value::Object(body)
}

/// The body of `POST /v1/resource-definitions/{rd}/resources`: an array.
pub fn resources_body(resources: &[NewResource]) -> Value {
    let items = resources
        .iter()
        .map(|resource| {
            let mut inner = Map::new();
            insert(&mut inner, "node_name", &resource.node_name);
            if !resource.flags.is_empty() {
                insert(&mut inner, "flags", &resource.flags);
            }
            if let Some(pool) = &resource.storage_pool {
                insert(
                    &mut inner,
                    "props",
                    json!({ ferrite_types::PROP_RESOURCE_STOR_POOL: pool }),
                );
            }
            let mut item = Map::new();
            item.insert("resource".to_string(), Value::Object(inner));
            if let Some(node_id) = resource.node_id {
                insert(&mut item, "drbd_node_id", node_id);
            }
            if !resource.layer_list.is_empty() {
                insert(&mut item, "layer_list", &resource.layer_list);
            }
            if let Some(port) = resource.tcp_port {
                insert(&mut item, "drbd_tcp_ports", [port]);
            }
            Value::Object(item)
        })
        .collect();
    Value::Array(items)
}

impl Client {
    // ---- controller -------------------------------------------------------------------

    /// `GET /v1/controller/version`, asked again (the handshake's answer is in
    /// [`Client::version`]).
    pub fn controller_version(&self) -> Result<Listing<ControllerVersion>, ClientError> {
        self.read("/v1/controller/version")
    }

    pub fn controller_properties(&self) -> Result<Listing<Props>, ClientError> {
        self.read("/v1/controller/properties")
    }

    pub fn modify_controller_properties(&self, body: &PropsModify) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            "/v1/controller/properties",
            Some(&to_value(body)),
        )
    }

    /// `POST /v1/controller/backup/db`: the controller writes a consistent copy of its store
    /// to `backup_name`, an absolute path on the controller's host.
    pub fn backup_database(&self, backup_name: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            "/v1/controller/backup/db",
            Some(&to_value(&DatabaseBackupRequest {
                backup_name: backup_name.to_string(),
            })),
        )
    }

    // ---- nodes ------------------------------------------------------------------------

    pub fn nodes(&self, filter: &ListFilter) -> Result<Listing<Vec<Node>>, ClientError> {
        self.read(&format!(
            "/v1/nodes{}",
            query(&[("nodes", &filter.nodes), ("props", &filter.props)])
        ))
    }

    pub fn create_node(&self, node: &NewNode) -> Result<Answer, ClientError> {
        self.act(Method::Post, "/v1/nodes", Some(&node_body(node)))
    }

    pub fn modify_node(&self, node: &str, body: &NodeModify) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/nodes/{}", encode(node)),
            Some(&to_value(body)),
        )
    }

    pub fn delete_node(&self, node: &str) -> Result<Answer, ClientError> {
        self.act(Method::Delete, &format!("/v1/nodes/{}", encode(node)), None)
    }

    pub fn lose_node(&self, node: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/nodes/{}/lost", encode(node)),
            None,
        )
    }

    pub fn reconnect_node(&self, node: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/nodes/{}/reconnect", encode(node)),
            None,
        )
    }

    pub fn net_interface(
        &self,
        node: &str,
        interface: &str,
    ) -> Result<Listing<NetInterface>, ClientError> {
        self.read(&format!(
            "/v1/nodes/{}/net-interfaces/{}",
            encode(node),
            encode(interface)
        ))
    }

    pub fn create_net_interface(
        &self,
        node: &str,
        interface: &NetInterface,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/nodes/{}/net-interfaces", encode(node)),
            Some(&to_value(interface)),
        )
    }

    pub fn modify_net_interface(
        &self,
        node: &str,
        interface: &NetInterface,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!(
                "/v1/nodes/{}/net-interfaces/{}",
                encode(node),
                encode(&interface.name)
            ),
            Some(&to_value(interface)),
        )
    }

    pub fn delete_net_interface(&self, node: &str, interface: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!(
                "/v1/nodes/{}/net-interfaces/{}",
                encode(node),
                encode(interface)
            ),
            None,
        )
    }

    /// `GET /v1/view/orphans`: the orphans of every node (Ferrite's own endpoint).
    pub fn orphans(&self) -> Result<Listing<Vec<Orphan>>, ClientError> {
        self.read("/v1/view/orphans")
    }

    /// `GET /v1/nodes/{node}/orphans`: the orphans of one node (Ferrite's own endpoint).
    pub fn node_orphans(&self, node: &str) -> Result<Listing<Vec<Orphan>>, ClientError> {
        self.read(&format!("/v1/nodes/{}/orphans", encode(node)))
    }

    /// `POST /v1/nodes/{node}/orphans/delete`: deletes the one orphan `orphan` names, identity
    /// included (`identity: null` names an orphan without identity). Ferrite's own endpoint.
    pub fn delete_orphan(&self, node: &str, orphan: &OrphanRef) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/nodes/{}/orphans/delete", encode(node)),
            Some(&to_value(orphan)),
        )
    }

    // ---- storage pools ----------------------------------------------------------------

    pub fn storage_pools(
        &self,
        filter: &ListFilter,
    ) -> Result<Listing<Vec<StoragePool>>, ClientError> {
        self.read(&format!(
            "/v1/view/storage-pools{}",
            query(&[
                ("nodes", &filter.nodes),
                ("storage_pools", &filter.storage_pools),
                ("props", &filter.props),
            ])
        ))
    }

    pub fn create_storage_pool(
        &self,
        node: &str,
        pool: &NewStoragePool,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/nodes/{}/storage-pools", encode(node)),
            Some(&storage_pool_body(pool)),
        )
    }

    pub fn modify_storage_pool(
        &self,
        node: &str,
        pool: &str,
        body: &PropsModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/nodes/{}/storage-pools/{}", encode(node), encode(pool)),
            Some(&to_value(body)),
        )
    }

    pub fn delete_storage_pool(&self, node: &str, pool: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/nodes/{}/storage-pools/{}", encode(node), encode(pool)),
            None,
        )
    }

    // ---- resource groups and volume groups --------------------------------------------

    pub fn resource_groups(
        &self,
        filter: &ListFilter,
    ) -> Result<Listing<Vec<ResourceGroup>>, ClientError> {
        self.read(&format!(
            "/v1/resource-groups{}",
            query(&[
                ("resource_groups", &filter.resource_groups),
                ("props", &filter.props),
            ])
        ))
    }

    pub fn create_resource_group(&self, group: &NewResourceGroup) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            "/v1/resource-groups",
            Some(&resource_group_body(group)),
        )
    }

    pub fn modify_resource_group(
        &self,
        group: &str,
        body: &ResourceGroupModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/resource-groups/{}", encode(group)),
            Some(&to_value(body)),
        )
    }

    pub fn delete_resource_group(&self, group: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/resource-groups/{}", encode(group)),
            None,
        )
    }

    pub fn spawn_resources(
        &self,
        group: &str,
        body: &ResourceGroupSpawn,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/resource-groups/{}/spawn", encode(group)),
            Some(&to_value(body)),
        )
    }

    pub fn volume_groups(&self, group: &str) -> Result<Listing<Vec<VolumeGroup>>, ClientError> {
        self.read(&format!(
            "/v1/resource-groups/{}/volume-groups",
            encode(group)
        ))
    }

    pub fn volume_group(
        &self,
        group: &str,
        volume_number: i32,
    ) -> Result<Listing<VolumeGroup>, ClientError> {
        self.read(&format!(
            "/v1/resource-groups/{}/volume-groups/{volume_number}",
            encode(group)
        ))
    }

    pub fn create_volume_group(
        &self,
        group: &str,
        volume_group: &NewVolumeGroup,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/resource-groups/{}/volume-groups", encode(group)),
            Some(&volume_group_body(volume_group)),
        )
    }

    pub fn modify_volume_group(
        &self,
        group: &str,
        volume_number: i32,
        body: &VolumeGroupModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!(
                "/v1/resource-groups/{}/volume-groups/{volume_number}",
                encode(group)
            ),
            Some(&to_value(body)),
        )
    }

    pub fn delete_volume_group(
        &self,
        group: &str,
        volume_number: i32,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!(
                "/v1/resource-groups/{}/volume-groups/{volume_number}",
                encode(group)
            ),
            None,
        )
    }

    // ---- resource definitions and volume definitions ----------------------------------

    pub fn resource_definitions(
        &self,
        filter: &ListFilter,
        with_volume_definitions: bool,
    ) -> Result<Listing<Vec<ResourceDefinition>>, ClientError> {
        let with = if with_volume_definitions {
            vec!["true".to_string()]
        } else {
            Vec::new()
        };
        self.read(&format!(
            "/v1/resource-definitions{}",
            query(&[
                ("resource_definitions", &filter.resources),
                ("resource_groups", &filter.resource_groups),
                ("props", &filter.props),
                ("with_volume_definitions", &with),
            ])
        ))
    }

    pub fn create_resource_definition(
        &self,
        definition: &NewResourceDefinition,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            "/v1/resource-definitions",
            Some(&resource_definition_body(definition)),
        )
    }

    pub fn modify_resource_definition(
        &self,
        definition: &str,
        body: &ResourceDefinitionModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/resource-definitions/{}", encode(definition)),
            Some(&to_value(body)),
        )
    }

    pub fn delete_resource_definition(&self, definition: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/resource-definitions/{}", encode(definition)),
            None,
        )
    }

    pub fn autoplace(
        &self,
        definition: &str,
        body: &AutoPlaceRequest,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/resource-definitions/{}/autoplace", encode(definition)),
            Some(&to_value(body)),
        )
    }

    pub fn volume_definition(
        &self,
        definition: &str,
        volume_number: i32,
    ) -> Result<Listing<VolumeDefinition>, ClientError> {
        self.read(&format!(
            "/v1/resource-definitions/{}/volume-definitions/{volume_number}",
            encode(definition)
        ))
    }

    pub fn create_volume_definition(
        &self,
        definition: &str,
        volume_definition: &NewVolumeDefinition,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/volume-definitions",
                encode(definition)
            ),
            Some(&volume_definition_body(volume_definition)),
        )
    }

    pub fn modify_volume_definition(
        &self,
        definition: &str,
        volume_number: i32,
        body: &VolumeDefinitionModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!(
                "/v1/resource-definitions/{}/volume-definitions/{volume_number}",
                encode(definition)
            ),
            Some(&to_value(body)),
        )
    }

    pub fn delete_volume_definition(
        &self,
        definition: &str,
        volume_number: i32,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!(
                "/v1/resource-definitions/{}/volume-definitions/{volume_number}",
                encode(definition)
            ),
            None,
        )
    }

    // ---- resources ----------------------------------------------------------------------

    /// `GET /v1/view/resources`: what both `resource list` and `volume list` show.
    pub fn resources(
        &self,
        filter: &ListFilter,
    ) -> Result<Listing<Vec<ResourceWithVolumes>>, ClientError> {
        self.read(&format!(
            "/v1/view/resources{}",
            query(&[
                ("nodes", &filter.nodes),
                ("resources", &filter.resources),
                ("storage_pools", &filter.storage_pools),
                ("props", &filter.props),
            ])
        ))
    }

    pub fn create_resources(
        &self,
        definition: &str,
        resources: &[NewResource],
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/resource-definitions/{}/resources", encode(definition)),
            Some(&resources_body(resources)),
        )
    }

    pub fn make_available(
        &self,
        definition: &str,
        node: &str,
        body: &ResourceMakeAvailable,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/resources/{}/make-available",
                encode(definition),
                encode(node)
            ),
            Some(&to_value(body)),
        )
    }

    pub fn modify_resource(
        &self,
        definition: &str,
        node: &str,
        body: &ResourceModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!(
                "/v1/resource-definitions/{}/resources/{}",
                encode(definition),
                encode(node)
            ),
            Some(&to_value(body)),
        )
    }

    pub fn delete_resource(
        &self,
        definition: &str,
        node: &str,
        keep_tiebreaker: bool,
    ) -> Result<Answer, ClientError> {
        let keep = if keep_tiebreaker {
            vec!["True".to_string()]
        } else {
            Vec::new()
        };
        self.act(
            Method::Delete,
            &format!(
                "/v1/resource-definitions/{}/resources/{}{}",
                encode(definition),
                encode(node),
                query(&[("keep_tiebreaker", &keep)])
            ),
            None,
        )
    }

    /// Toggle-disk: the JSON-body form from API 1.28 on, the URL form before.
    pub fn toggle_disk(
        &self,
        definition: &str,
        node: &str,
        request: &ToggleDiskRequest,
    ) -> Result<Answer, ClientError> {
        let resource = format!(
            "/v1/resource-definitions/{}/resources/{}",
            encode(definition),
            encode(node)
        );
        if self.api_version() >= ApiVersion::TOGGLE_DISK_BODY {
            return self.act(
                Method::Put,
                &format!("{resource}/toggle-disk"),
                Some(&to_value(request)),
            );
        }
        let mut path = match (&request.migrate_from, request.operation) {
            (Some(from), _) => format!("{resource}/migrate-disk/{}", encode(from)),
            (None, ToggleDiskOperation::IntoDrbdDiskful) => {
                format!("{resource}/toggle-disk/diskful")
            }
            (None, _) => format!("{resource}/toggle-disk/diskless"),
        };
        if let Some(pool) = &request.storage_pool {
            path.push('/');
            path.push_str(&encode(pool));
        }
        self.act(Method::Put, &path, None)
    }

    /// `POST …/resources/{node}/volumes/{volume_number}/recreate-missing`: the node creates a
    /// volume it made and lost anew, empty (Ferrite's own endpoint).
    pub fn recreate_missing_volume(
        &self,
        definition: &str,
        node: &str,
        volume_number: i32,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/resources/{}/volumes/{volume_number}/recreate-missing",
                encode(definition),
                encode(node)
            ),
            None,
        )
    }

    // ---- error reports ------------------------------------------------------------------

    pub fn error_reports(&self) -> Result<Listing<Vec<ErrorReport>>, ClientError> {
        self.read("/v1/error-reports")
    }

    pub fn error_report(&self, id: &str) -> Result<Listing<Vec<ErrorReport>>, ClientError> {
        self.read(&format!("/v1/error-reports/{}", encode(id)))
    }

    pub fn delete_error_report(&self, id: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/error-reports/{}", encode(id)),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use ferrite_types::EncryptionType;

    use super::*;

    #[test]
    fn node_body_as_the_linstor_cli_sends_it() {
        let body = node_body(&NewNode {
            name: "alpha".into(),
            node_type: NodeType::Combined,
            net_interface: NetInterface {
                name: "default".into(),
                address: "10.43.70.2".into(),
                satellite_port: Some(3366),
                satellite_encryption_type: Some(EncryptionType::Plain),
                is_active: Some(true),
                uuid: None,
            },
            props: Props::new(),
        });
        assert_eq!(
            body,
            json!({"name": "alpha", "type": "COMBINED", "net_interfaces": [{"name": "default",
                "address": "10.43.70.2", "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN", "is_active": true}]})
        );
    }

    #[test]
    fn create_bodies_leave_out_what_was_not_given() {
        assert_eq!(volume_group_body(&NewVolumeGroup::default()), json!({}));
        assert_eq!(
            volume_group_body(&NewVolumeGroup {
                volume_number: Some(1),
                gross: true
            }),
            json!({"volume_number": 1, "flags": ["GROSS_SIZE"]})
        );
        assert_eq!(
            resource_definition_body(&NewResourceDefinition {
                name: "R2".into(),
                ..Default::default()
            }),
            json!({"resource_definition": {"name": "R2"}})
        );
        assert_eq!(
            volume_definition_body(&NewVolumeDefinition {
                size_kib: 1_048_576,
                ..Default::default()
            }),
            json!({"volume_definition": {"size_kib": 1_048_576, "flags": []}})
        );
        assert_eq!(
            resources_body(&[NewResource {
                node_name: "delta".into(),
                flags: vec!["DISKLESS".into()],
                ..Default::default()
            }]),
            json!([{"resource": {"node_name": "delta", "flags": ["DISKLESS"]}}])
        );
        assert_eq!(
            resources_body(&[NewResource {
                node_name: "alpha".into(),
                storage_pool: Some("pool_ssd".into()),
                ..Default::default()
            }]),
            json!([{"resource": {"node_name": "alpha", "props": {"StorPoolName": "pool_ssd"}}}])
        );
        assert_eq!(
            storage_pool_body(&NewStoragePool {
                name: "pool_ssd".into(),
                provider_kind: ProviderKind::Lvm,
                driver_pool: Some("drbdpool".into()),
                shared_space: None,
                external_locking: false,
            }),
            json!({"storage_pool_name": "pool_ssd", "provider_kind": "LVM",
                "props": {"StorDriver/StorPoolName": "drbdpool"}})
        );
        assert_eq!(
            resource_group_body(&NewResourceGroup {
                name: "G".into(),
                select_filter: AutoSelectFilter {
                    place_count: Some(2),
                    storage_pool_list: Some(vec!["pool_ssd".into()]),
                    ..Default::default()
                },
                ..Default::default()
            }),
            json!({"name": "G", "select_filter": {"place_count": 2, "storage_pool_list": ["pool_ssd"]}})
        );
    }
}
