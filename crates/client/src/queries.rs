//! The calls beyond the object families of `endpoints`: size queries, the space report, the
//! key-value store, node connections and resource connections.

use ferrite_types::rest::{
    AutoSelectFilter, KeyValueStore, MaxVolumeSizes, NodeConnection, NodeEvacuate, NodeRestore,
    PhysicalStorage, PhysicalStorageCreate, PhysicalStorageNode, PropsModify,
    QueryAllSizeInfoResponse, QuerySizeInfoResponse, ResourceConnection, ResourceGroupAdjust,
    SpaceReport, SyncStatus,
};
use serde_json::{Value, json};

use crate::client::{Client, Method, encode, query};
use crate::error::{Answer, ClientError, Listing};

fn modify_body(body: &PropsModify) -> Value {
    serde_json::to_value(body).expect("request bodies serialize")
}

impl Client {
    /// `PUT /v1/nodes/{node}/evacuate`.
    pub fn evacuate_node(&self, node: &str, body: &NodeEvacuate) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/nodes/{}/evacuate", encode(node)),
            Some(&serde_json::to_value(body).expect("request bodies serialize")),
        )
    }

    /// `PUT /v1/nodes/{node}/restore`.
    pub fn restore_node(&self, node: &str, body: &NodeRestore) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/nodes/{}/restore", encode(node)),
            Some(&serde_json::to_value(body).expect("request bodies serialize")),
        )
    }

    /// `POST /v1/resource-definitions/{rd}/resources/{node}/activate` (`active`) or
    /// `…/deactivate`.
    pub fn set_resource_active(
        &self,
        resource: &str,
        node: &str,
        active: bool,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/resources/{}/{}",
                encode(resource),
                encode(node),
                if active { "activate" } else { "deactivate" }
            ),
            None,
        )
    }

    /// `POST /v1/resource-groups/{rg}/adjust`, or `…/adjustall` without a group.
    pub fn adjust_resource_groups(
        &self,
        group: Option<&str>,
        body: &ResourceGroupAdjust,
    ) -> Result<Answer, ClientError> {
        let target = match group {
            Some(group) => format!("/v1/resource-groups/{}/adjust", encode(group)),
            None => "/v1/resource-groups/adjustall".to_string(),
        };
        self.act(
            Method::Post,
            &target,
            Some(&serde_json::to_value(body).expect("request bodies serialize")),
        )
    }

    /// `GET /v1/physical-storage`.
    pub fn physical_storage(&self) -> Result<Listing<Vec<PhysicalStorage>>, ClientError> {
        self.read("/v1/physical-storage")
    }

    /// `GET /v1/physical-storage/{node}`.
    pub fn node_physical_storage(
        &self,
        node: &str,
    ) -> Result<Listing<Vec<PhysicalStorageNode>>, ClientError> {
        self.read(&format!("/v1/physical-storage/{}", encode(node)))
    }

    /// `POST /v1/physical-storage/{node}`.
    pub fn create_device_pool(
        &self,
        node: &str,
        body: &PhysicalStorageCreate,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!("/v1/physical-storage/{}", encode(node)),
            Some(&serde_json::to_value(body).expect("request bodies serialize")),
        )
    }

    /// `POST /v1/resource-groups/{rg}/query-size-info` with the group's filter overridden by
    /// `filter`.
    pub fn query_size_info(
        &self,
        group: &str,
        filter: &AutoSelectFilter,
    ) -> Result<Listing<QuerySizeInfoResponse>, ClientError> {
        self.query_with(
            Method::Post,
            &format!("/v1/resource-groups/{}/query-size-info", encode(group)),
            Some(&json!({"select_filter": filter})),
        )
    }

    /// `POST /v1/queries/resource-groups/query-all-size-info`.
    pub fn query_all_size_info(&self) -> Result<Listing<QueryAllSizeInfoResponse>, ClientError> {
        self.query_with(
            Method::Post,
            "/v1/queries/resource-groups/query-all-size-info",
            Some(&json!({})),
        )
    }

    /// `GET /v1/resource-groups/{rg}/query-max-volume-size`.
    pub fn query_max_volume_size(
        &self,
        group: &str,
    ) -> Result<Listing<MaxVolumeSizes>, ClientError> {
        self.read(&format!(
            "/v1/resource-groups/{}/query-max-volume-size",
            encode(group)
        ))
    }

    /// `GET /v1/space-report`.
    pub fn space_report(&self) -> Result<Listing<SpaceReport>, ClientError> {
        self.read("/v1/space-report")
    }

    /// `GET /v1/resource-definitions/{rd}/sync-status`.
    pub fn sync_status(&self, resource: &str) -> Result<Listing<SyncStatus>, ClientError> {
        self.read(&format!(
            "/v1/resource-definitions/{}/sync-status",
            encode(resource)
        ))
    }

    /// `GET /v1/key-value-store`.
    pub fn key_value_stores(&self) -> Result<Listing<Vec<KeyValueStore>>, ClientError> {
        self.read("/v1/key-value-store")
    }

    /// `GET /v1/key-value-store/{instance}`.
    pub fn key_value_store(
        &self,
        instance: &str,
    ) -> Result<Listing<Vec<KeyValueStore>>, ClientError> {
        self.read(&format!("/v1/key-value-store/{}", encode(instance)))
    }

    /// `PUT /v1/key-value-store/{instance}`.
    pub fn modify_key_value_store(
        &self,
        instance: &str,
        body: &PropsModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/key-value-store/{}", encode(instance)),
            Some(&modify_body(body)),
        )
    }

    /// `DELETE /v1/key-value-store/{instance}`.
    pub fn delete_key_value_store(&self, instance: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!("/v1/key-value-store/{}", encode(instance)),
            None,
        )
    }

    /// `GET /v1/node-connections`, optionally of one node or one pair.
    pub fn node_connections(
        &self,
        node_a: Option<&str>,
        node_b: Option<&str>,
    ) -> Result<Listing<Vec<NodeConnection>>, ClientError> {
        let a: Vec<String> = node_a.map(str::to_string).into_iter().collect();
        let b: Vec<String> = node_b.map(str::to_string).into_iter().collect();
        self.read(&format!(
            "/v1/node-connections{}",
            query(&[("node_a", &a), ("node_b", &b)])
        ))
    }

    /// `PUT /v1/node-connections/{a}/{b}`.
    pub fn modify_node_connection(
        &self,
        node_a: &str,
        node_b: &str,
        body: &PropsModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!("/v1/node-connections/{}/{}", encode(node_a), encode(node_b)),
            Some(&modify_body(body)),
        )
    }

    /// `GET /v1/resource-definitions/{rd}/resource-connections`.
    pub fn resource_connections(
        &self,
        resource: &str,
    ) -> Result<Listing<Vec<ResourceConnection>>, ClientError> {
        self.read(&format!(
            "/v1/resource-definitions/{}/resource-connections",
            encode(resource)
        ))
    }

    /// `GET /v1/resource-definitions/{rd}/resource-connections/{a}/{b}`.
    pub fn resource_connection(
        &self,
        resource: &str,
        node_a: &str,
        node_b: &str,
    ) -> Result<Listing<Vec<ResourceConnection>>, ClientError> {
        self.read(&format!(
            "/v1/resource-definitions/{}/resource-connections/{}/{}",
            encode(resource),
            encode(node_a),
            encode(node_b)
        ))
    }

    /// `PUT /v1/resource-definitions/{rd}/resource-connections/{a}/{b}`.
    pub fn modify_resource_connection(
        &self,
        resource: &str,
        node_a: &str,
        node_b: &str,
        body: &PropsModify,
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Put,
            &format!(
                "/v1/resource-definitions/{}/resource-connections/{}/{}",
                encode(resource),
                encode(node_a),
                encode(node_b)
            ),
            Some(&modify_body(body)),
        )
    }
}
