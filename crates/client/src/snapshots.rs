//! Snapshot calls: take, list, delete, restore, roll back, and `resource-definition clone`
//! (whose answer is a clone-started object carrying the entries, not an entry list).

use ferrite_types::ApiCallRc;
use ferrite_types::rest::{ResourceDefinitionCloneStarted, Snapshot};
use serde_json::{Value, json};

use crate::client::{Client, Method, encode, query};
use crate::error::{Answer, ClientError, Listing};

impl Client {
    /// `GET /v1/view/snapshots`.
    pub fn snapshots(
        &self,
        nodes: &[String],
        resources: &[String],
    ) -> Result<Listing<Vec<Snapshot>>, ClientError> {
        self.read(&format!(
            "/v1/view/snapshots{}",
            query(&[("nodes", nodes), ("resources", resources)])
        ))
    }

    /// `snapshot create [NODES] R S`.
    pub fn create_snapshot(
        &self,
        resource: &str,
        snapshot: &str,
        nodes: &[String],
    ) -> Result<Answer, ClientError> {
        let mut body = json!({ "name": snapshot });
        if !nodes.is_empty() {
            body["nodes"] = json!(nodes);
        }
        self.act(
            Method::Post,
            &format!("/v1/resource-definitions/{}/snapshots", encode(resource)),
            Some(&body),
        )
    }

    /// `snapshot delete R S [--nodes N...]`.
    pub fn delete_snapshot(
        &self,
        resource: &str,
        snapshot: &str,
        nodes: &[String],
    ) -> Result<Answer, ClientError> {
        self.act(
            Method::Delete,
            &format!(
                "/v1/resource-definitions/{}/snapshots/{}{}",
                encode(resource),
                encode(snapshot),
                query(&[("nodes", nodes)])
            ),
            None,
        )
    }

    /// `snapshot rollback R S`.
    pub fn rollback_snapshot(&self, resource: &str, snapshot: &str) -> Result<Answer, ClientError> {
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/snapshot-rollback/{}",
                encode(resource),
                encode(snapshot)
            ),
            Some(&json!({})),
        )
    }

    /// `snapshot volume-definition restore` (`volume_definitions_only`) and `snapshot resource
    /// restore`.
    pub fn restore_snapshot(
        &self,
        resource: &str,
        snapshot: &str,
        to_resource: &str,
        nodes: &[String],
        volume_definitions_only: bool,
    ) -> Result<Answer, ClientError> {
        let mut body = json!({ "to_resource": to_resource });
        if !nodes.is_empty() {
            body["nodes"] = json!(nodes);
        }
        let call = if volume_definitions_only {
            "snapshot-restore-volume-definition"
        } else {
            "snapshot-restore-resource"
        };
        self.act(
            Method::Post,
            &format!(
                "/v1/resource-definitions/{}/{call}/{}",
                encode(resource),
                encode(snapshot)
            ),
            Some(&body),
        )
    }

    /// `resource-definition clone SOURCE CLONE`: the entries of the clone-started answer.
    pub fn clone_resource_definition(
        &self,
        source: &str,
        clone: &str,
    ) -> Result<Answer, ClientError> {
        let target = format!("/v1/resource-definitions/{}/clone", encode(source));
        let body = json!({ "name": clone }).to_string();
        let reply = self.request(Method::Post, &target, Some(&body))?;
        if (200..300).contains(&reply.status) {
            let started: ResourceDefinitionCloneStarted = serde_json::from_str(&reply.body)
                .map_err(|e| {
                    self.unexpected(
                        Method::Post,
                        &target,
                        reply.status,
                        format!("the answer is not a clone-started object: {e}"),
                    )
                })?;
            let raw = serde_json::to_string(&started.messages).unwrap_or_else(|_| "[]".into());
            return Ok(Answer {
                status: reply.status,
                replies: started.messages,
                raw,
            });
        }
        match serde_json::from_str::<Vec<ApiCallRc>>(&reply.body) {
            Ok(replies) => Ok(Answer {
                status: reply.status,
                replies,
                raw: reply.body,
            }),
            Err(e) => Err(self.unexpected(Method::Post, &target, reply.status, e.to_string())),
        }
    }

    /// `GET /v1/resource-definitions/{source}/clone/{clone}`: `CLONING`, `COMPLETE` or
    /// `FAILED`.
    pub fn clone_status(&self, source: &str, clone: &str) -> Result<String, ClientError> {
        let listing: Listing<Value> = self.read(&format!(
            "/v1/resource-definitions/{}/clone/{}",
            encode(source),
            encode(clone)
        ))?;
        Ok(listing.items["status"].as_str().unwrap_or("").to_string())
    }
}
