//! Size queries: how large a volume a resource group can still place (`query-size-info`,
//! `query-all-size-info`, `query-max-volume-size`), and the space report.
//!
//! The answers come from the same autoplacer that places resources, run for a definition that
//! does not exist yet, on the free space satellites reported minus what is committed and not
//! yet created (`capacity`), as LINSTOR computes them:
//!
//! - `max_vlm_size_in_kib`: the least free space among the pools the next spawn would use (0
//!   when it cannot place; the reason is in `reports`);
//! - `available_size_in_kib` and `capacity_in_kib`: how much could be placed in all, with
//!   `place_count` replicas at a time, over the free space (resp. total capacity) of every pool
//!   the filter allows (`fill`).
//!
//! Ferrite's autoplacer does not oversubscribe thin pools (it compares their reported free
//! space like thick ones'), so every oversubscription ratio is answered as 1.

use std::collections::BTreeMap;

use ferrite_placement::{Candidate, CandidatePool};
use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, AutoSelectFilter};
use ferrite_types::{ApiCallRc, LayerKind, ResourceName, StorPoolName};

use super::placement::{self, DEFAULT_PLACE_COUNT, ResourcesOfInterest, Runtime};
use super::{Context, Failure, Object, Operation, resource_groups};
use crate::model::Cluster;

const QUERY: Context = Context::new(Operation::Modify, Object::ResourceGroup);

/// The ratio every answer carries: Ferrite places thin pools by their free space, without
/// oversubscription.
const OVERSUBSCRIPTION_RATIO: f64 = 1.0;

/// `POST /v1/resource-groups/{rg}/query-size-info`.
pub fn query_size_info(
    cluster: &Cluster,
    runtime: &Runtime,
    group: &str,
    body: &rest::QuerySizeInfoRequest,
) -> Result<rest::QuerySizeInfoResponse, Failure> {
    let found = resource_groups::find(&QUERY, cluster, group)?;
    let filter = match &body.select_filter {
        Some(overrides) => found.select_filter.overridden_by(overrides),
        None => found.select_filter.clone(),
    };
    let (filter, unknown_pools) = placement::validate_group_filter(&QUERY, cluster, &filter)?;
    let mut answer = size_info(cluster, runtime, &filter);
    answer.reports.extend(unknown_pools);
    Ok(answer)
}

/// `POST /v1/queries/resource-groups/query-all-size-info`: every group's answer; a group whose
/// filter is refused answers zero sizes with the refusal in its `reports`.
pub fn query_all_size_info(
    cluster: &Cluster,
    runtime: &Runtime,
    body: &rest::QuerySizeInfoRequest,
) -> rest::QueryAllSizeInfoResponse {
    let result = cluster
        .resource_groups
        .values()
        .map(|group| {
            let name = group.name.to_string();
            let answer = query_size_info(cluster, runtime, &name, body)
                .unwrap_or_else(|refusal| empty_answer(refusal.0));
            (name, answer)
        })
        .collect();
    rest::QueryAllSizeInfoResponse {
        result,
        reports: Vec::new(),
    }
}

/// `GET /v1/resource-groups/{rg}/query-max-volume-size`: for each storage pool name the group
/// allows, the largest volume its place count of replicas could take in pools of that name.
pub fn query_max_volume_size(
    cluster: &Cluster,
    runtime: &Runtime,
    group: &str,
) -> Result<rest::MaxVolumeSizes, Failure> {
    let found = resource_groups::find(&QUERY, cluster, group)?;
    let (filter, _) = placement::validate_group_filter(&QUERY, cluster, &found.select_filter)?;
    let allowed = filter.storage_pools();
    let mut pool_names: Vec<StorPoolName> = cluster
        .nodes
        .values()
        .flat_map(|n| n.storage_pools.values())
        .filter(|p| !p.is_diskless())
        .map(|p| p.name.clone())
        .filter(|name| allowed.is_empty() || allowed.iter().any(|a| name.as_str() == a))
        .collect();
    pool_names.sort();
    pool_names.dedup();
    let candidates = candidates_for(cluster, runtime, &filter);
    let mut answer = Vec::new();
    for pool in pool_names {
        let mut one_pool = filter.clone();
        one_pool.storage_pool = None;
        one_pool.storage_pool_list = Some(vec![pool.to_string()]);
        let Ok(selected) = next_spawn(&one_pool, &candidates) else {
            continue;
        };
        if selected.is_empty() {
            continue;
        }
        answer.push(rest::MaxVolumeSizeCandidate {
            storage_pool: pool.to_string(),
            max_volume_size_kib: kib(selected.iter().map(|(_, p)| free(p)).min()),
            node_names: selected.iter().map(|(c, _)| c.node.to_string()).collect(),
            all_thin: selected.iter().all(|(_, p)| p.provider_kind.is_thin()),
        });
    }
    Ok(rest::MaxVolumeSizes {
        candidates: answer,
        default_max_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
    })
}

/// The size info of a validated filter.
pub fn size_info(
    cluster: &Cluster,
    runtime: &Runtime,
    filter: &AutoSelectFilter,
) -> rest::QuerySizeInfoResponse {
    let candidates = candidates_for(cluster, runtime, filter);
    let place_count = place_count(filter);
    let mut reports = Vec::new();
    let selected = match next_spawn(filter, &candidates) {
        Ok(selected) => selected,
        Err(refusal) => {
            reports.push(
                QUERY
                    .warn(
                        code::FAIL_NOT_ENOUGH_NODES,
                        format!(
                            "The group cannot place {place_count} replica(s) of a new resource now."
                        ),
                    )
                    .cause(refusal),
            );
            Vec::new()
        }
    };
    let allowed = allowed_pools(filter, &candidates);
    let (frees, totals): (Vec<u64>, Vec<u64>) = allowed
        .iter()
        .map(|p| (free(p), p.total_capacity_kib.unwrap_or(0)))
        .unzip();
    rest::QuerySizeInfoResponse {
        space_info: rest::QuerySizeInfoSpaceInfo {
            max_vlm_size_in_kib: kib(selected.iter().map(|(_, p)| free(p)).min()),
            available_size_in_kib: kib(Some(fill(frees, place_count))),
            capacity_in_kib: kib(Some(fill(totals, place_count))),
            default_max_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_free_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_total_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            next_spawn_result: selected
                .iter()
                .map(|(c, p)| rest::QuerySizeInfoSpawnResult {
                    node_name: c.node.to_string(),
                    stor_pool_name: p.name.to_string(),
                    stor_pool_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
                    stor_pool_free_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
                    stor_pool_total_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
                })
                .collect(),
        },
        reports,
    }
}

fn empty_answer(reports: Vec<ApiCallRc>) -> rest::QuerySizeInfoResponse {
    rest::QuerySizeInfoResponse {
        space_info: rest::QuerySizeInfoSpaceInfo {
            max_vlm_size_in_kib: 0,
            available_size_in_kib: 0,
            capacity_in_kib: 0,
            default_max_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_free_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            max_total_capacity_oversubscription_ratio: OVERSUBSCRIPTION_RATIO,
            next_spawn_result: Vec::new(),
        },
        reports,
    }
}

fn place_count(filter: &AutoSelectFilter) -> usize {
    filter.place_count.unwrap_or(DEFAULT_PLACE_COUNT).max(1) as usize
}

fn kib(value: Option<u64>) -> i64 {
    i64::try_from(value.unwrap_or(0)).unwrap_or(i64::MAX)
}

fn free(pool: &CandidatePool) -> u64 {
    pool.free_capacity_kib.unwrap_or(0)
}

fn candidates_for(
    cluster: &Cluster,
    runtime: &Runtime,
    filter: &AutoSelectFilter,
) -> Vec<Candidate> {
    let named: Vec<ResourceName> = filter
        .not_place_with_rsc
        .iter()
        .flatten()
        .filter_map(|r| r.parse().ok())
        .collect();
    let interest = if filter.not_place_with_rsc_regex.is_some() {
        ResourcesOfInterest::All
    } else {
        ResourcesOfInterest::Named(&named)
    };
    placement::candidates(cluster, runtime, interest)
}

/// The nodes and pools the next spawn from `filter` would use, best first, or why none.
fn next_spawn<'a>(
    filter: &AutoSelectFilter,
    candidates: &'a [Candidate],
) -> Result<Vec<(&'a Candidate, &'a CandidatePool)>, String> {
    let mut request = placement::filter_request(filter, place_count(filter));
    request.layer_stack = layers(filter);
    let placed = ferrite_placement::place(&request, candidates).map_err(|r| r.summary())?;
    Ok(placed
        .diskful
        .iter()
        .filter_map(|(node, pool)| {
            let candidate = candidates.iter().find(|c| &c.node == node)?;
            let pool = candidate.pools.iter().find(|p| &p.name == pool)?;
            Some((candidate, pool))
        })
        .collect())
}

/// The storage layers of the filter's stack; the replication engine is chosen per definition.
fn layers(filter: &AutoSelectFilter) -> Vec<LayerKind> {
    filter
        .layer_stack
        .iter()
        .flatten()
        .filter_map(|l| l.parse::<LayerKind>().ok())
        .filter(|l| !l.is_replication())
        .collect()
}

/// Every diskful pool the filter allows on an available node, whether or not the next spawn
/// would choose it.
fn allowed_pools<'a>(
    filter: &AutoSelectFilter,
    candidates: &'a [Candidate],
) -> Vec<&'a CandidatePool> {
    let nodes: Vec<&String> = filter.node_name_list.iter().flatten().collect();
    let pools = filter.storage_pools();
    let providers: Vec<&String> = filter.provider_list.iter().flatten().collect();
    candidates
        .iter()
        .filter(|c| c.unavailable.is_none())
        .filter(|c| {
            nodes.is_empty()
                || nodes
                    .iter()
                    .any(|n| c.node.as_str().eq_ignore_ascii_case(n))
        })
        .flat_map(|c| c.pools.iter())
        .filter(|p| p.provider_kind.has_backing_device() && p.unusable.is_none())
        .filter(|p| {
            pools.is_empty()
                || pools
                    .iter()
                    .any(|n| p.name.as_str().eq_ignore_ascii_case(n))
        })
        .filter(|p| {
            providers.is_empty()
                || providers
                    .iter()
                    .any(|k| p.provider_kind.as_str().eq_ignore_ascii_case(k))
        })
        .collect()
}

/// How much can be placed in `sizes`, `replicas` copies at a time, each copy in another pool:
/// while `replicas` pools have space left, the largest `replicas` of them take as much as the
/// smallest of those has.
pub fn fill(mut sizes: Vec<u64>, replicas: usize) -> u64 {
    let mut placed = 0u64;
    sizes.retain(|s| *s > 0);
    while replicas > 0 && sizes.len() >= replicas {
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let amount = sizes[replicas - 1];
        placed = placed.saturating_add(amount);
        for size in sizes.iter_mut().take(replicas) {
            *size -= amount;
        }
        sizes.retain(|s| *s > 0);
    }
    placed
}

/// `GET /v1/space-report`: the space of every storage pool, per node and per provider, as
/// text.
pub fn space_report(cluster: &Cluster, runtime: &Runtime) -> rest::SpaceReport {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Space report of cluster {} at {}",
        cluster.cluster_id,
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let _ = writeln!(text);
    let mut by_provider: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for node in cluster.nodes.values() {
        for pool in node.storage_pools.values().filter(|p| !p.is_diskless()) {
            let reported = runtime
                .get(&node.name)
                .and_then(|r| r.pools.get(pool.name.key()));
            let total = reported.and_then(|p| p.total_capacity_kib);
            let free = reported.and_then(|p| p.free_capacity_kib);
            let shown = |v: Option<u64>| v.map_or("unknown".to_string(), |v| format!("{v} KiB"));
            let used = total.zip(free).map(|(t, f)| t.saturating_sub(f));
            let _ = writeln!(
                text,
                "Node {}, storage pool {} ({}): capacity {}, free {}, used {}",
                node.name,
                pool.name,
                pool.provider_kind,
                shown(total),
                shown(free),
                shown(used)
            );
            let entry = by_provider.entry(pool.provider_kind.as_str()).or_default();
            entry.0 += total.unwrap_or(0);
            entry.1 += used.unwrap_or(0);
        }
    }
    let _ = writeln!(text);
    for (provider, (total, used)) in &by_provider {
        let _ = writeln!(text, "{provider}: capacity {total} KiB, used {used} KiB");
    }
    let (total, used) = by_provider
        .values()
        .fold((0u64, 0u64), |(t, u), (pt, pu)| (t + pt, u + pu));
    let _ = writeln!(text, "All pools: capacity {total} KiB, used {used} KiB");
    rest::SpaceReport { report_text: text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_places_replicas_in_distinct_pools() {
        // Two replicas over 10, 10, 10: the two largest take 10 each, the third pool is left
        // alone (LINSTOR's estimate is greedy, not the best split).
        assert_eq!(fill(vec![10, 10, 10], 2), 10);
        assert_eq!(fill(vec![10, 6, 4], 2), 10);
        // One large pool cannot hold both copies.
        assert_eq!(fill(vec![100, 10], 2), 10);
        assert_eq!(fill(vec![100], 2), 0);
        assert_eq!(fill(vec![7, 5], 1), 12);
        assert_eq!(fill(vec![], 1), 0);
        assert_eq!(fill(vec![3, 3], 0), 0);
    }
}
