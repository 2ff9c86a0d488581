//! Who the satellite is and whom it serves: its node name and its cluster, and the handshake
//! rules that follow from them.
//!
//! The first controller that connects fixes the cluster (and, without `--node-name`, the node
//! name); both are persisted in `identity.json`. A controller of another cluster is refused, so a
//! stranger's empty desired state can never delete this node's volumes.

use std::path::Path;

use ferrite_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Refusal, is_compatible};
use ferrite_types::NodeName;
use serde::{Deserialize, Serialize};

use crate::persist::IDENTITY_FILE;

/// The persisted identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_name: String,
}

/// What a controller says about itself in its `Hello`.
#[derive(Debug, Clone)]
pub struct Greeting<'a> {
    pub protocol_version: u32,
    pub cluster_id: &'a str,
    pub node_name: &'a str,
}

/// Decides whether a controller may open a session. On success, the identity the satellite has
/// from now on (to persist if it changed).
pub fn admit(
    greeting: &Greeting<'_>,
    configured_node_name: Option<&NodeName>,
    current: Option<&Identity>,
    state_dir: &Path,
) -> Result<Identity, Refusal> {
    if !is_compatible(greeting.protocol_version) {
        return Err(Refusal::VersionMismatch {
            controller: greeting.protocol_version,
            satellite_min: MIN_PROTOCOL_VERSION,
            satellite_max: PROTOCOL_VERSION,
        });
    }
    // A stranger is told so first, whatever it calls this node.
    if let Some(current) = current
        && current.cluster_id != greeting.cluster_id
    {
        return Err(Refusal::OtherController {
            controller_cluster: greeting.cluster_id.to_string(),
            satellite_cluster: current.cluster_id.clone(),
            correction: format!(
                "to move this node to cluster {new}, first delete it from cluster {old} (which \
                 removes its resources there), then stop the satellite, remove {identity} and \
                 start the satellite again",
                new = greeting.cluster_id,
                old = current.cluster_id,
                identity = state_dir.join(IDENTITY_FILE).display(),
            ),
        });
    }
    let expected = configured_node_name
        .map(|n| n.as_str().to_string())
        .or_else(|| current.map(|i| i.node_name.clone()));
    if let Some(expected) = &expected {
        let same = match (NodeName::new(expected), NodeName::new(greeting.node_name)) {
            (Ok(a), Ok(b)) => a == b,
            _ => expected == greeting.node_name,
        };
        if !same {
            return Err(Refusal::NodeNameMismatch {
                controller: greeting.node_name.to_string(),
                satellite: expected.clone(),
            });
        }
    } else if let Err(e) = NodeName::new(greeting.node_name) {
        // Nothing to compare with, but the name will be adopted: it has to be valid.
        return Err(Refusal::NodeNameMismatch {
            controller: greeting.node_name.to_string(),
            satellite: format!("(none yet; {e})"),
        });
    }
    Ok(Identity {
        cluster_id: greeting.cluster_id.to_string(),
        node_name: expected.unwrap_or_else(|| greeting.node_name.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello<'a>(cluster_id: &'a str, node_name: &'a str) -> Greeting<'a> {
        Greeting {
            protocol_version: PROTOCOL_VERSION,
            cluster_id,
            node_name,
        }
    }

    const DIR: &str = "/var/lib/ferrite/satellite";

    #[test]
    fn the_first_controller_is_adopted() {
        let identity = admit(&hello("c1", "node1"), None, None, Path::new(DIR)).unwrap();
        assert_eq!(
            identity,
            Identity {
                cluster_id: "c1".into(),
                node_name: "node1".into()
            }
        );
        // The same controller again, names compared case-insensitively as LINSTOR does.
        let again = admit(&hello("c1", "NODE1"), None, Some(&identity), Path::new(DIR)).unwrap();
        assert_eq!(again, identity);
    }

    #[test]
    fn version_mismatch_is_refused_first() {
        let greeting = Greeting {
            protocol_version: PROTOCOL_VERSION + 1,
            cluster_id: "c1",
            node_name: "node1",
        };
        let refusal = admit(&greeting, None, None, Path::new(DIR)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::VersionMismatch { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn a_configured_name_must_match() {
        let name = NodeName::new("node1").unwrap();
        let refusal = admit(&hello("c1", "node2"), Some(&name), None, Path::new(DIR)).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NodeNameMismatch {
                controller: "node2".into(),
                satellite: "node1".into()
            }
        );
    }

    #[test]
    fn an_adopted_name_must_match_later() {
        let identity = Identity {
            cluster_id: "c1".into(),
            node_name: "node1".into(),
        };
        let refusal =
            admit(&hello("c1", "node9"), None, Some(&identity), Path::new(DIR)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::NodeNameMismatch { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn another_cluster_is_refused_with_a_way_out() {
        let identity = Identity {
            cluster_id: "c1".into(),
            node_name: "node1".into(),
        };
        let refusal =
            admit(&hello("c2", "node1"), None, Some(&identity), Path::new(DIR)).unwrap_err();
        let text = refusal.to_string();
        assert!(
            text.starts_with("the satellite belongs to cluster c1, not to cluster c2"),
            "{text}"
        );
        assert!(
            text.contains("remove /var/lib/ferrite/satellite/identity.json"),
            "{text}"
        );
    }

    #[test]
    fn a_stranger_is_a_stranger_whatever_it_calls_the_node() {
        let identity = Identity {
            cluster_id: "c1".into(),
            node_name: "node1".into(),
        };
        let refusal =
            admit(&hello("c2", "node9"), None, Some(&identity), Path::new(DIR)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::OtherController { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn invalid_names_are_not_adopted() {
        let refusal = admit(&hello("c1", "bad name"), None, None, Path::new(DIR)).unwrap_err();
        assert!(
            matches!(refusal, Refusal::NodeNameMismatch { .. }),
            "{refusal}"
        );
    }
}
