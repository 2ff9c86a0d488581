//! Which definitions have a resource on each node: the index a node's full state is built
//! from, so that building sixteen nodes' full states (every satellite, when a controller
//! starts) walks the definitions' map once per node with no lookups, instead of looking for
//! the node among every definition's resources sixteen times (1.6 million lookups at 100,000
//! definitions, a quarter of a core-second).
//!
//! It is one of the graph's derived indexes (`derived`: built on first use, dropped by every
//! change, never carried into a clone), marked with the revision and the number of definitions
//! it was built at; one that does not match is not used. Each node's entry holds the ordinals
//! of its definitions in the map's order (4 bytes per resource), not their names.

use ferrite_types::NodeName;

use super::{Cluster, Resource, ResourceDefinition};

/// For each node (by its key, in order), the ordinals of the definitions with a resource on it.
#[derive(Debug)]
pub(super) struct Ordinals {
    revision: u64,
    definitions: usize,
    nodes: Vec<(String, Vec<u32>)>,
}

impl Ordinals {
    fn of(cluster: &Cluster) -> Ordinals {
        let mut nodes: Vec<(String, Vec<u32>)> = cluster
            .nodes
            .keys()
            .map(|name| (name.key().to_string(), Vec::new()))
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        for (ordinal, rd) in cluster.resource_definitions.values().enumerate() {
            for node in rd.resources.keys() {
                if let Ok(at) = nodes.binary_search_by(|(key, _)| key.as_str().cmp(node.key())) {
                    nodes[at].1.push(ordinal as u32);
                }
            }
        }
        Ordinals {
            revision: cluster.revision,
            definitions: cluster.resource_definitions.len(),
            nodes,
        }
    }

    fn of_node(&self, node: &NodeName) -> Option<&[u32]> {
        self.nodes
            .binary_search_by(|(key, _)| key.as_str().cmp(node.key()))
            .ok()
            .map(|at| self.nodes[at].1.as_slice())
    }
}

impl Cluster {
    /// The resources on `node` with their definitions, in definition order: what
    /// [`Cluster::resources_on_node`] lists, from the index. Only for the live graph, which
    /// changes through `Op::apply` alone; a scratch copy should walk.
    pub fn resources_on_node_indexed<'a>(
        &'a self,
        node: &'a NodeName,
    ) -> Vec<(&'a ResourceDefinition, &'a Resource)> {
        let built = self.derived.by_node.get_or_build(|| Ordinals::of(self));
        let ordinals = (built.revision == self.revision
            && built.definitions == self.resource_definitions.len())
        .then(|| built.of_node(node))
        .flatten();
        let Some(ordinals) = ordinals else {
            return self.resources_on_node(node).collect();
        };
        let mut found = Vec::with_capacity(ordinals.len());
        let mut definitions = self.resource_definitions.values();
        let mut next = 0usize;
        for &ordinal in ordinals {
            let ordinal = ordinal as usize;
            let rd = definitions.nth(ordinal - next);
            next = ordinal + 1;
            match rd.and_then(|rd| rd.resources.get(node).map(|r| (rd, r))) {
                Some(pair) => found.push(pair),
                // Not reached: the index matches the graph it was built from.
                None => {
                    tracing::error!(%node, "the index of resources by node does not match the graph; walking it");
                    return self.resources_on_node(node).collect();
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, tutorial_cluster};
    use crate::model::Op;

    fn names(pairs: Vec<(&ResourceDefinition, &Resource)>) -> Vec<String> {
        pairs.iter().map(|(rd, _)| rd.name.to_string()).collect()
    }

    fn walked(cluster: &Cluster, node: &NodeName) -> Vec<String> {
        names(cluster.resources_on_node(node).collect())
    }

    #[test]
    fn the_index_lists_what_the_walk_lists_before_and_after_changes() {
        let mut cluster = tutorial_cluster();
        for i in 0..150 {
            let name = format!("r{i:03}");
            add_resource(
                &mut cluster,
                &name,
                ["node1", "node2", "node3"][i % 3],
                "pool_ssd",
            );
            if i % 2 == 0 {
                add_resource(&mut cluster, &name, "node4", "pool_ssd");
            }
        }
        let nodes: Vec<NodeName> = cluster.nodes.keys().cloned().collect();
        for node in &nodes {
            assert_eq!(
                names(cluster.resources_on_node_indexed(node)),
                walked(&cluster, node),
                "{node}"
            );
        }
        // A change drops the index; the next use builds it for the new graph.
        for node in ["node2", "node4"] {
            Op::DeleteResource {
                resource: "r004".parse().unwrap(),
                node: node.parse().unwrap(),
            }
            .apply(&mut cluster);
        }
        Op::DeleteResourceDefinition("r004".parse().unwrap()).apply(&mut cluster);
        Op::DeleteResource {
            resource: "r005".parse().unwrap(),
            node: "node3".parse().unwrap(),
        }
        .apply(&mut cluster);
        for node in &nodes {
            let listed = names(cluster.resources_on_node_indexed(node));
            assert!(!listed.contains(&"r004".to_string()));
            assert!(
                *node != "node3".parse::<NodeName>().unwrap()
                    || !listed.contains(&"r005".to_string())
            );
            assert_eq!(listed, walked(&cluster, node), "{node}");
        }
        // An unknown node has nothing.
        let nowhere: NodeName = "nowhere".parse().unwrap();
        assert!(cluster.resources_on_node_indexed(&nowhere).is_empty());
    }

    #[test]
    fn an_index_of_another_graph_is_not_used() {
        let mut cluster = tutorial_cluster();
        for i in 0..20 {
            add_resource(&mut cluster, &format!("r{i:02}"), "node1", "pool_ssd");
        }
        let node1: NodeName = "node1".parse().unwrap();
        let before = names(cluster.resources_on_node_indexed(&node1));
        // A change made without `Op::apply` (as on a scratch copy), with the revision moved:
        // the index built before is ignored.
        cluster
            .resource_definitions
            .remove(&"r03".parse::<ferrite_types::ResourceName>().unwrap());
        cluster.revision += 1;
        let after = names(cluster.resources_on_node_indexed(&node1));
        assert_eq!(after.len(), before.len() - 1);
        assert_eq!(after, walked(&cluster, &node1));
    }
}
