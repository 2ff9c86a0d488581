//! Decoding [`ControllerMessage`] and [`SatelliteMessage`] without buffering their big variants.
//!
//! Both enums are internally tagged (`{"type": "ApplyState", ...}`). serde's derived decoder for
//! such an enum first reads the whole object into a buffer of its own and then decodes the
//! variant from that buffer: for a full state of 12,500 resources (2.7 MiB of JSON, what every
//! node of a 100,000-resource cluster gets when the controller restarts) and for the report
//! answering it, the decoding is done twice. The encoder (serde's derive, on both sides) writes
//! the tag first. So the tag is read first, and the variants that carry a desired state or a
//! node report are decoded straight from the rest of the object. Every other message, and one
//! whose tag is not its first key, is read into a `serde_json::Value` and handed to the derived
//! decoder (`#[serde(remote = "Self")]` keeps it as an inherent function): it decodes the same
//! messages and refuses the same malformed ones. The encoding is the derived one, unchanged.

use std::fmt;

use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{ControllerMessage, DesiredState, NodeReport, SatelliteMessage, StateRefusal};

/// The key internally tagged messages carry their variant's name in.
const TAG: &str = "type";

/// What was read of a message before deciding how to decode it.
enum First {
    /// The tag came first: the variant's name.
    Tag(String),
    /// Another key came first, with its value.
    Entry(String, Value),
    /// The object is empty.
    Nothing,
}

fn read_first<'de, A: MapAccess<'de>>(map: &mut A) -> Result<First, A::Error> {
    match map.next_key::<String>()? {
        None => Ok(First::Nothing),
        Some(key) if key == TAG => Ok(First::Tag(map.next_value()?)),
        Some(key) => {
            let value = map.next_value()?;
            Ok(First::Entry(key, value))
        }
    }
}

/// The whole message as a `Value`: what was read of it, then the rest.
fn whole<'de, A: MapAccess<'de>>(first: First, mut map: A) -> Result<Value, A::Error> {
    let mut object = Map::new();
    match first {
        First::Tag(tag) => {
            object.insert(TAG.to_string(), Value::String(tag));
        }
        First::Entry(key, value) => {
            object.insert(key, value);
        }
        First::Nothing => {}
    }
    while let Some((key, value)) = map.next_entry::<String, Value>()? {
        if object.contains_key(&key) {
            return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
        }
        object.insert(key, value);
    }
    Ok(Value::Object(object))
}

/// The rest of the object (after its tag) as a `T`.
fn rest<'de, A: MapAccess<'de>, T: Deserialize<'de>>(map: A) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(map))
}

impl Serialize for ControllerMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The derived encoder (inherent, through `remote = "Self"`).
        ControllerMessage::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ControllerMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Message;
        impl<'de> Visitor<'de> for Message {
            type Value = ControllerMessage;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a controller message (an object with a \"type\")")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let first = read_first(&mut map)?;
                if let First::Tag(tag) = &first
                    && tag == "ApplyState"
                {
                    return rest::<_, DesiredState>(map).map(ControllerMessage::ApplyState);
                }
                // The derived decoder (inherent, through `remote = "Self"`).
                ControllerMessage::deserialize(whole(first, map)?).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(Message)
    }
}

/// The fields of [`SatelliteMessage::Applied`].
#[derive(Deserialize)]
struct Applied {
    generation: u64,
    report: NodeReport,
}

/// The fields of [`SatelliteMessage::NotApplied`].
#[derive(Deserialize)]
struct NotApplied {
    generation: u64,
    refusal: StateRefusal,
    report: NodeReport,
}

/// The fields of [`SatelliteMessage::Report`].
#[derive(Deserialize)]
struct Report {
    report: NodeReport,
}

impl Serialize for SatelliteMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SatelliteMessage::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for SatelliteMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Message;
        impl<'de> Visitor<'de> for Message {
            type Value = SatelliteMessage;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a satellite message (an object with a \"type\")")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let first = read_first(&mut map)?;
                if let First::Tag(tag) = &first {
                    match tag.as_str() {
                        "Applied" => {
                            let Applied { generation, report } = rest(map)?;
                            return Ok(SatelliteMessage::Applied { generation, report });
                        }
                        "NotApplied" => {
                            let NotApplied {
                                generation,
                                refusal,
                                report,
                            } = rest(map)?;
                            return Ok(SatelliteMessage::NotApplied {
                                generation,
                                refusal,
                                report,
                            });
                        }
                        "Report" => {
                            let Report { report } = rest(map)?;
                            return Ok(SatelliteMessage::Report { report });
                        }
                        _ => {}
                    }
                }
                SatelliteMessage::deserialize(whole(first, map)?).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Capabilities, HeldState, NodeCommand, PoolReport, PoolSpec, Refusal, ResourceSpec, Stamp,
        VolumeReport, VolumeSpec, content_digest,
    };
    use ferrite_types::{LayerKind, ProviderKind};

    fn desired() -> DesiredState {
        DesiredState {
            epoch: 2,
            generation: 9,
            base_generation: Some(8),
            storage_pools: vec![PoolSpec {
                name: "files".into(),
                uuid: "pool-uuid".into(),
                provider_kind: ProviderKind::FileThin,
                pool_name: "/var/lib/ferrite/files".into(),
                props: Default::default(),
            }],
            resources: vec![ResourceSpec {
                replication: None,
                snapshots: Vec::new(),
                suspend_io: false,
                name: "web".into(),
                uuid: "rsc-web".into(),
                layers: vec![LayerKind::Storage],
                diskless: false,
                deleting: false,
                inactive: false,
                volumes: vec![VolumeSpec {
                    minor: Some(1000),
                    restore_from: None,
                    volume_number: 0,
                    identity: "vd-web-0".into(),
                    size_kib: 4096,
                    storage_pool: "files".into(),
                    deleting: false,
                }],
            }],
            removed_resources: vec!["db".into()],
        }
    }

    fn report() -> NodeReport {
        NodeReport {
            generation: Some(9),
            volumes: vec![VolumeReport {
                resource: "web".into(),
                volume_number: 0,
                device_path: Some("/dev/loop3".into()),
                allocated_size_kib: Some(12),
                usable_size_kib: Some(4096),
                disk_state: "UpToDate".into(),
                error: None,
            }],
            errors: vec!["a node-wide problem".into()],
            ..NodeReport::default()
        }
    }

    fn controller_messages() -> Vec<ControllerMessage> {
        vec![
            ControllerMessage::Hello {
                protocol_version: 7,
                cluster_id: "cluster".into(),
                node_name: "node1".into(),
                node_uuid: "node-uuid".into(),
                controller_version: "1.0".into(),
            },
            ControllerMessage::ApplyState(desired()),
            ControllerMessage::ApplySameState {
                epoch: 1,
                generation: 12,
                digest: content_digest(&desired().storage_pools, &desired().resources),
            },
            ControllerMessage::CheckPool {
                request_id: 3,
                pool: desired().storage_pools[0].clone(),
            },
            ControllerMessage::Command {
                request_id: 4,
                command: NodeCommand::DeleteOrphan {
                    resource: "web".into(),
                    volume_number: 0,
                    identity: None,
                    pool_name: "/var/lib/ferrite/files".into(),
                },
            },
            ControllerMessage::Ping,
        ]
    }

    fn satellite_messages() -> Vec<SatelliteMessage> {
        vec![
            SatelliteMessage::Welcome {
                protocol_version: 7,
                node_name: "node1".into(),
                hostname: "host1".into(),
                satellite_version: "1.0".into(),
                capabilities: Capabilities::default(),
                holds: None,
            },
            SatelliteMessage::Welcome {
                protocol_version: 8,
                node_name: "node1".into(),
                hostname: "host1".into(),
                satellite_version: "1.1".into(),
                capabilities: Capabilities::default(),
                holds: Some(HeldState {
                    stamp: Stamp {
                        epoch: 1,
                        generation: 11,
                    },
                    digest: content_digest(&desired().storage_pools, &desired().resources),
                }),
            },
            SatelliteMessage::Refused {
                reason: Refusal::NodeNameMismatch {
                    controller: "node1".into(),
                    satellite: "node2".into(),
                },
            },
            SatelliteMessage::Applied {
                generation: 9,
                report: report(),
            },
            SatelliteMessage::NotApplied {
                generation: 9,
                refusal: StateRefusal::Conflicting {
                    stamp: Default::default(),
                },
                report: report(),
            },
            SatelliteMessage::NeedFullState {
                have_generation: Some(3),
            },
            SatelliteMessage::Report { report: report() },
            SatelliteMessage::PoolChecked {
                request_id: 5,
                report: PoolReport {
                    name: "files".into(),
                    provider_kind: ProviderKind::FileThin,
                    free_capacity_kib: Some(1024),
                    total_capacity_kib: Some(4096),
                    errors: Vec::new(),
                },
            },
            SatelliteMessage::CommandDone {
                request_id: 6,
                result: Err("no such volume".into()),
            },
            SatelliteMessage::Pong,
        ]
    }

    /// The message's JSON with its tag moved to the end, as another encoder might write it.
    fn tag_last(json: &str) -> String {
        let Value::Object(object) = serde_json::from_str::<Value>(json).unwrap() else {
            panic!("not an object: {json}");
        };
        let tag = object.get(TAG).cloned().unwrap();
        let mut moved = Map::new();
        for (key, value) in object.into_iter().filter(|(key, _)| key != TAG) {
            moved.insert(key, value);
        }
        let mut text = serde_json::to_string(&Value::Object(moved)).unwrap();
        text.pop();
        if text.len() > 1 {
            text.push(',');
        }
        format!("{text}\"type\":{tag}}}")
    }

    #[test]
    fn every_message_decodes_to_itself_with_its_tag_first_or_last() {
        for message in controller_messages() {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with("{\"type\":"), "{json}");
            assert_eq!(
                serde_json::from_str::<ControllerMessage>(&json).unwrap(),
                message
            );
            let moved = tag_last(&json);
            assert_eq!(
                serde_json::from_str::<ControllerMessage>(&moved).unwrap(),
                message,
                "{moved}"
            );
            assert_eq!(
                serde_json::from_value::<ControllerMessage>(
                    serde_json::to_value(&message).unwrap()
                )
                .unwrap(),
                message
            );
        }
        for message in satellite_messages() {
            let json = serde_json::to_string(&message).unwrap();
            assert!(json.starts_with("{\"type\":"), "{json}");
            assert_eq!(
                serde_json::from_str::<SatelliteMessage>(&json).unwrap(),
                message
            );
            let moved = tag_last(&json);
            assert_eq!(
                serde_json::from_str::<SatelliteMessage>(&moved).unwrap(),
                message,
                "{moved}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_the_reason() {
        let refused = |json: &str| serde_json::from_str::<ControllerMessage>(json).unwrap_err();
        assert!(refused("{}").to_string().contains("missing field `type`"));
        assert!(refused("[]").to_string().contains("controller message"));
        assert!(
            refused(r#"{"type":"Launch"}"#)
                .to_string()
                .contains("unknown variant `Launch`")
        );
        assert!(
            refused(r#"{"type":"ApplyState","epoch":1}"#)
                .to_string()
                .contains("missing field")
        );
        assert!(
            refused(r#"{"type":7}"#)
                .to_string()
                .contains("invalid type")
        );
        assert!(
            refused(r#"{"request_id":1,"request_id":2,"type":"Ping"}"#)
                .to_string()
                .contains("duplicate field")
        );
        let refused = |json: &str| serde_json::from_str::<SatelliteMessage>(json).unwrap_err();
        assert!(
            refused(r#"{"type":"Applied","generation":"nine"}"#)
                .to_string()
                .contains("invalid type")
        );
        assert!(
            refused(r#"{"type":"Report"}"#)
                .to_string()
                .contains("missing field `report`")
        );
    }
}
