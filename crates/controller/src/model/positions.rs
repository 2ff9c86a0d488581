//! Where the list of every resource, ordered by definition then node, passes each 64th
//! definition: the index that lets a page of `GET /v1/view/resources` far into that list start
//! near its first resource instead of walking every resource before it.
//!
//! It is one of the graph's derived indexes (`derived`: built on first use, dropped by every
//! change, never carried into a clone), and it records the revision it was built at, so it is
//! never read against another graph than its own: an index of another revision is ignored (the
//! list is then walked from its start). It holds names only, one per
//! 64 definitions, so it costs little memory; a page then skips at most 63 definitions.

use ferrite_types::ResourceName;

use super::{Cluster, Resource, ResourceDefinition};

/// How many definitions lie between two marks of the index.
const STRIDE: usize = 64;

/// Every [`STRIDE`]-th definition in order, with how many resources come before it.
#[derive(Debug)]
pub(super) struct Marks {
    revision: u64,
    marks: Vec<(ResourceName, usize)>,
}

impl Marks {
    fn of(cluster: &Cluster) -> Marks {
        let mut marks = Vec::with_capacity(cluster.resource_definitions.len() / STRIDE + 1);
        let mut before = 0;
        for (index, rd) in cluster.resource_definitions.values().enumerate() {
            if index % STRIDE == 0 {
                marks.push((rd.name.clone(), before));
            }
            before += rd.resources.len();
        }
        Marks {
            revision: cluster.revision,
            marks,
        }
    }
}

impl Cluster {
    /// Every resource with its definition, ordered by definition then node, from the one at
    /// `position` on (counted from 0; past the end, nothing).
    pub fn resources_from(
        &self,
        position: usize,
    ) -> impl Iterator<Item = (&ResourceDefinition, &Resource)> + '_ {
        let built = self.derived.positions.get_or_build(|| Marks::of(self));
        let mark = if built.revision == self.revision {
            // The last mark at or before `position`.
            built
                .marks
                .partition_point(|(_, before)| *before <= position)
                .checked_sub(1)
                .map(|index| &built.marks[index])
        } else {
            None
        };
        let (definitions, skip) = match mark {
            Some((name, before)) => (self.resource_definitions.range(name..), position - before),
            None => (
                self.resource_definitions.range::<ResourceName, _>(..),
                position,
            ),
        };
        definitions
            .flat_map(|(_, rd)| rd.resources.values().map(move |resource| (rd, resource)))
            .skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::{add_resource, tutorial_cluster};
    use crate::model::Op;

    /// (definition, node) of every resource from `position` on.
    fn listed_from(cluster: &Cluster, position: usize) -> Vec<(String, String)> {
        cluster
            .resources_from(position)
            .map(|(rd, r)| (rd.name.to_string(), r.node.to_string()))
            .collect()
    }

    /// The same, walked from the start without the index.
    fn walked_from(cluster: &Cluster, position: usize) -> Vec<(String, String)> {
        cluster
            .resource_definitions
            .values()
            .flat_map(|rd| rd.resources.values().map(move |r| (rd, r)))
            .skip(position)
            .map(|(rd, r)| (rd.name.to_string(), r.node.to_string()))
            .collect()
    }

    /// Definitions with 0 to 3 resources each, so marks fall on empty definitions too.
    fn cluster_of(definitions: usize) -> Cluster {
        let mut cluster = tutorial_cluster();
        for index in 0..definitions {
            let name = format!("res{index:04}");
            add_resource(&mut cluster, &name, "node1", "pool_ssd");
            for node in ["node2", "node3"]
                .into_iter()
                .take((index % 4).saturating_sub(1))
            {
                add_resource(&mut cluster, &name, node, "pool_ssd");
            }
            if index % 4 == 0 {
                let rd = cluster
                    .resource_definitions
                    .get_mut(&name.parse::<ResourceName>().unwrap())
                    .unwrap();
                rd.resources = Default::default();
            }
        }
        cluster
    }

    fn every_position_agrees(cluster: &Cluster) {
        let total = walked_from(cluster, 0).len();
        for position in 0..=total + 2 {
            assert_eq!(
                listed_from(cluster, position),
                walked_from(cluster, position),
                "from {position} of {total}"
            );
        }
    }

    #[test]
    fn every_position_starts_where_the_walk_from_the_start_does() {
        for definitions in [0, 1, STRIDE - 1, STRIDE, STRIDE + 1, 3 * STRIDE + 5] {
            every_position_agrees(&cluster_of(definitions));
        }
    }

    #[test]
    fn a_change_through_an_op_drops_the_index() {
        let mut cluster = cluster_of(3 * STRIDE);
        every_position_agrees(&cluster);

        // Delete a definition near the start (one without resources), so every mark after
        // it moves.
        let empty: ResourceName = "res0004".parse().unwrap();
        Op::DeleteResourceDefinition(empty).apply(&mut cluster);
        every_position_agrees(&cluster);

        // Delete one resource.
        let resource: ResourceName = "res0002".parse().unwrap();
        let node = "node2".parse().unwrap();
        Op::DeleteResource { resource, node }.apply(&mut cluster);
        every_position_agrees(&cluster);

        // Add a definition that sorts before every other, then a resource of it.
        let template = cluster
            .resource_definition(&"res0001".parse().unwrap())
            .unwrap()
            .clone();
        let placed = template.resources.values().next().unwrap().clone();
        let mut early = template;
        early.name = "aaa".parse().unwrap();
        early.resources = Default::default();
        Op::PutResourceDefinition(early).apply(&mut cluster);
        every_position_agrees(&cluster);
        Op::PutResource {
            resource: "aaa".parse().unwrap(),
            placed,
        }
        .apply(&mut cluster);
        assert_eq!(listed_from(&cluster, 0)[0].0, "aaa");
        every_position_agrees(&cluster);
    }

    #[test]
    fn an_index_of_another_revision_is_not_used() {
        let mut cluster = cluster_of(2 * STRIDE + 3);
        every_position_agrees(&cluster);
        // A change that bypasses `Op::apply` but moves the revision, as a test helper's might.
        let name: ResourceName = "res0001".parse().unwrap();
        cluster.resource_definitions.remove(&name);
        cluster.revision += 1;
        every_position_agrees(&cluster);
    }

    #[test]
    fn a_clone_builds_its_own_index() {
        let cluster = cluster_of(2 * STRIDE);
        every_position_agrees(&cluster);
        let mut copy = cluster.clone();
        let name: ResourceName = "res0001".parse().unwrap();
        copy.resource_definitions.remove(&name);
        every_position_agrees(&copy);
        every_position_agrees(&cluster);
    }
}
