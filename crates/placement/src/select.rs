//! The selection: among the qualifying nodes (each with its best pool and score), the wanted
//! number with the highest sum of scores that satisfy the rules among themselves.
//!
//! Owns the search and the reasons given to qualifying nodes when no selection exists. The
//! search is a depth-first branch-and-bound over the nodes in score order (best first, ties by
//! node then pool name): the first complete selection it reaches is the greedy one, and a branch
//! is cut as soon as the best scores still open to it cannot beat the best selection found or
//! are too few. replicas-on-same keys whose value is not fixed yet split the nodes into groups
//! searched one by one. One placement's searches share [`SEARCH_STEP_BUDGET`] steps (each group
//! always gets enough for its greedy selection); a search out of steps keeps the best selection
//! found by then.

use std::collections::BTreeMap;

use ferrite_types::size::format_kib;

use crate::Eligible;
use crate::rules::{Rules, Value, show};

/// How many steps (a step looks at one node) the searches of one placement may take before they
/// settle for the best selection found so far; as many again are allowed for working out how
/// many replicas could be placed when the wanted number cannot. A step costs nanoseconds, so a
/// placement takes milliseconds even among hundreds of nodes; small clusters are always
/// searched exhaustively.
pub const SEARCH_STEP_BUDGET: u64 = 2_000_000;

/// The steps a search over `members` nodes for `need` of them is allowed at least: enough for
/// its greedy descent, whatever the budget left.
fn greedy_steps(members: usize, need: usize) -> u64 {
    (members as u64).saturating_mul(need as u64 + 1)
}

/// The steps the next of `searches` searches may take out of `left`.
fn share(left: u64, searches: usize, members: usize, need: usize) -> u64 {
    (left / searches.max(1) as u64).max(greedy_steps(members, need))
}

pub(crate) enum Outcome {
    /// Indices into the qualifying nodes, best first.
    Chosen(Vec<usize>),
    /// No selection of the wanted size: how many could be placed, and for every qualifying node
    /// why it did not help.
    Short { found: usize, reasons: Vec<String> },
}

/// A replicas-on-different or x-replicas-on-different rule over the qualifying nodes.
struct Limit {
    /// Each node's value, as an index into `values`.
    value_of: Vec<usize>,
    /// How many more replicas each value may take.
    remaining: Vec<usize>,
    values: Vec<Value>,
}

pub(crate) fn select(eligible: &[Eligible], rules: &Rules, need: usize) -> Outcome {
    let scores: Vec<u64> = eligible.iter().map(|e| e.free_kib).collect();
    let limits: Vec<Limit> = rules
        .limits
        .iter()
        .map(|rule| {
            let mut values: Vec<Value> = Vec::new();
            let value_of = eligible
                .iter()
                .map(|e| {
                    let value = e.candidate.props.get(&rule.key).cloned();
                    match values.iter().position(|v| *v == value) {
                        Some(index) => index,
                        None => {
                            values.push(value);
                            values.len() - 1
                        }
                    }
                })
                .collect();
            let remaining = values.iter().map(|v| rule.remaining(v)).collect();
            Limit {
                value_of,
                remaining,
                values,
            }
        })
        .collect();

    // Nodes grouped by their values of the replicas-on-same keys still free (every qualifying
    // node has them), groups in order of their best node.
    let free_keys = rules.free_same_keys();
    let mut grouped: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for (index, e) in eligible.iter().enumerate() {
        let key = free_keys
            .iter()
            .map(|k| e.candidate.props.get(*k).map_or("", String::as_str))
            .collect();
        grouped.entry(key).or_default().push(index);
    }
    let mut groups: Vec<Vec<usize>> = grouped.into_values().collect();
    groups.sort_by_key(|g| g[0]);

    let mut best: Option<(u128, Vec<usize>)> = None;
    let mut gave_up = false;
    let searchable: Vec<&Vec<usize>> = groups.iter().filter(|g| g.len() >= need).collect();
    let mut left = SEARCH_STEP_BUDGET;
    for (index, group) in searchable.iter().enumerate() {
        let top: u128 = group.iter().take(need).map(|&i| scores[i] as u128).sum();
        if best.as_ref().is_some_and(|(sum, _)| top <= *sum) {
            continue;
        }
        let allowance = share(left, searchable.len() - index, group.len(), need);
        let mut search = Search::new(&scores, &limits, group, need, false, allowance);
        search.run();
        left = left.saturating_sub(search.steps);
        gave_up |= search.gave_up;
        if let Some((sum, chosen)) = search.best
            && best.as_ref().is_none_or(|(best_sum, _)| sum > *best_sum)
        {
            best = Some((sum, chosen));
        }
    }
    if let Some((_, chosen)) = best {
        return Outcome::Chosen(chosen);
    }

    // How many could be placed: per group, the sizes up from the best known until one is not
    // feasible (then no larger one is). Every qualifying node alone is feasible.
    let mut found = usize::from(!eligible.is_empty());
    let mut left = SEARCH_STEP_BUDGET;
    for (index, group) in groups.iter().enumerate() {
        for k in found + 1..need.min(group.len() + 1) {
            let allowance = share(left, groups.len() - index, group.len(), k);
            let mut search = Search::new(&scores, &limits, group, k, true, allowance);
            search.run();
            left = left.saturating_sub(search.steps);
            if search.best.is_none() {
                break;
            }
            found = k;
        }
    }

    let mut reasons = vec![String::new(); eligible.len()];
    for group in &groups {
        let shared: Vec<String> = free_keys
            .iter()
            .map(|k| show(k, &eligible[group[0]].candidate.props.get(*k).cloned()))
            .collect();
        let why = why_short(rules, &limits, group, &shared, need, gave_up);
        for &index in group {
            let e = &eligible[index];
            reasons[index] = format!(
                "node '{}' qualifies (storage pool '{}', {} free), but {why}",
                e.node(),
                e.pool,
                format_kib(e.free_kib)
            );
        }
    }
    Outcome::Short { found, reasons }
}

/// Why a group of qualifying nodes cannot hold `need` new replicas.
fn why_short(
    rules: &Rules,
    limits: &[Limit],
    group: &[usize],
    shared: &[String],
    need: usize,
    gave_up: bool,
) -> String {
    let sharing = if shared.is_empty() {
        String::new()
    } else {
        format!(" sharing its {} (replicas-on-same)", shared.join(", "))
    };
    if group.len() < need {
        return if shared.is_empty() {
            format!("only {} node(s) qualify, {need} needed", group.len())
        } else {
            format!(
                "only {} qualifying node(s) share its {} (replicas-on-same), {need} needed",
                group.len(),
                shared.join(", ")
            )
        };
    }
    for (rule, limit) in rules.limits.iter().zip(limits) {
        let mut count: BTreeMap<usize, usize> = BTreeMap::new();
        for &index in group {
            *count.entry(limit.value_of[index]).or_default() += 1;
        }
        let room: Vec<(usize, usize)> = count
            .iter()
            .map(|(&value, &nodes)| (value, nodes.min(limit.remaining[value])))
            .filter(|(_, room)| *room > 0)
            .collect();
        let capacity: usize = room.iter().map(|(_, room)| room).sum();
        if capacity >= need {
            continue;
        }
        let values: Vec<String> = room
            .iter()
            .map(|(value, room)| {
                let value = show(&rule.key, &limit.values[*value]);
                match rule.per_value {
                    None => value,
                    Some(_) => format!("{value}: {room}"),
                }
            })
            .collect();
        return match rule.per_value {
            None => format!(
                "the qualifying nodes{sharing} have only {capacity} distinct unused value(s) of \
                 '{}' [{}], and replicas-on-different needs {need}",
                rule.key,
                values.join(", ")
            ),
            Some(n) => format!(
                "x-replicas-on-different '{}' {n} leaves room for only {capacity} more replica(s) \
                 on the qualifying nodes{sharing} [{}], {need} needed",
                rule.key,
                values.join(", ")
            ),
        };
    }
    let names: Vec<String> = rules.limits.iter().map(|r| r.name()).collect();
    let together = if shared.is_empty() {
        names.join(" and ")
    } else {
        format!("replicas-on-same and {}", names.join(" and "))
    };
    if gave_up {
        format!(
            "no {need} qualifying nodes{sharing} that together satisfy {together} were found \
             within the search limit ({SEARCH_STEP_BUDGET} steps)"
        )
    } else {
        format!("no {need} qualifying nodes{sharing} together satisfy {together}")
    }
}

/// One branch-and-bound search over a group of nodes.
struct Search<'a> {
    scores: &'a [u64],
    limits: &'a [Limit],
    /// Node indices, best score first.
    members: &'a [usize],
    need: usize,
    /// Stop at the first complete selection (only feasibility matters).
    first_only: bool,
    /// Per limit, replicas chosen per value.
    used: Vec<Vec<usize>>,
    /// Per value of the first limit, nodes counted in the bound being computed.
    counted: Vec<usize>,
    /// The values whose `counted` is to be reset (kept to reuse its allocation).
    touched: Vec<usize>,
    chosen: Vec<usize>,
    best: Option<(u128, Vec<usize>)>,
    steps: u64,
    allowance: u64,
    gave_up: bool,
}

impl<'a> Search<'a> {
    fn new(
        scores: &'a [u64],
        limits: &'a [Limit],
        members: &'a [usize],
        need: usize,
        first_only: bool,
        allowance: u64,
    ) -> Self {
        Self {
            scores,
            limits,
            members,
            need,
            first_only,
            used: limits.iter().map(|l| vec![0; l.values.len()]).collect(),
            counted: vec![0; limits.first().map_or(0, |l| l.values.len())],
            touched: Vec::new(),
            chosen: Vec::with_capacity(need),
            best: None,
            steps: 0,
            allowance,
            gave_up: false,
        }
    }

    fn run(&mut self) {
        self.descend(0, 0);
    }

    fn fits(&self, node: usize) -> bool {
        self.limits.iter().zip(&self.used).all(|(limit, used)| {
            let value = limit.value_of[node];
            used[value] < limit.remaining[value]
        })
    }

    fn take(&mut self, node: usize, delta: isize) {
        for (limit, used) in self.limits.iter().zip(self.used.iter_mut()) {
            let value = limit.value_of[node];
            used[value] = used[value].wrapping_add_signed(delta);
        }
    }

    /// Extends the current selection with members from `position` on. Recursion is as deep as
    /// the selection is long; skipping a node is the loop.
    fn descend(&mut self, mut position: usize, sum: u128) {
        loop {
            if self.chosen.len() == self.need {
                if self.best.as_ref().is_none_or(|(best, _)| sum > *best) {
                    self.best = Some((sum, self.chosen.clone()));
                }
                return;
            }
            if self.first_only && self.best.is_some() {
                return;
            }
            if self.steps > self.allowance {
                self.gave_up = true;
                return;
            }
            // An upper bound on what this branch can reach: the best nodes that still fit, taken
            // greedily under the first limit alone (greedy is optimal for one limit, and
            // dropping the others only loosens the bound). Nodes that do not fit now never will:
            // choices only add up.
            let open = self.need - self.chosen.len();
            let mut bound = sum;
            let mut fitting = 0;
            let mut next = None;
            let mut touched = std::mem::take(&mut self.touched);
            for (offset, &node) in self.members[position..].iter().enumerate() {
                self.steps += 1;
                if !self.fits(node) {
                    continue;
                }
                next.get_or_insert(position + offset);
                if let Some(first) = self.limits.first() {
                    let value = first.value_of[node];
                    if self.used[0][value] + self.counted[value] >= first.remaining[value] {
                        continue;
                    }
                    self.counted[value] += 1;
                    touched.push(value);
                }
                bound += self.scores[node] as u128;
                fitting += 1;
                if fitting == open {
                    break;
                }
            }
            for value in touched.drain(..) {
                self.counted[value] = 0;
            }
            self.touched = touched;
            let Some(next) = next else { return };
            if fitting < open || self.best.as_ref().is_some_and(|(best, _)| bound <= *best) {
                return;
            }
            let node = self.members[next];
            self.take(node, 1);
            self.chosen.push(node);
            self.descend(next + 1, sum + self.scores[node] as u128);
            self.chosen.pop();
            self.take(node, -1);
            position = next + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit of one replica per value, `value_of` giving each node's value.
    fn one_per_value(value_of: Vec<usize>) -> Limit {
        let values = value_of.iter().max().map_or(0, |m| m + 1);
        Limit {
            value_of,
            remaining: vec![1; values],
            values: (0..values).map(|v| Some(format!("v{v}"))).collect(),
        }
    }

    /// `nodes` nodes, best first, in blocks of `per_value` sharing one value of a
    /// replicas-on-different key: the best selection takes the first node of each block.
    fn blocks(nodes: usize, per_value: usize) -> (Vec<u64>, Vec<Limit>, Vec<usize>) {
        let scores = (0..nodes as u64).map(|i| 10_000 - i).collect();
        let limit = one_per_value((0..nodes).map(|i| i / per_value).collect());
        (scores, vec![limit], (0..nodes).collect())
    }

    fn first_of_each_block(blocks: usize, per_value: usize) -> Vec<usize> {
        (0..blocks).map(|b| b * per_value).collect()
    }

    #[test]
    fn one_limit_is_searched_exhaustively_however_many_nodes() {
        let (scores, limits, members) = blocks(3000, 30);
        let mut search = Search::new(&scores, &limits, &members, 32, false, SEARCH_STEP_BUDGET);
        search.run();
        assert!(!search.gave_up, "took {} steps", search.steps);
        assert_eq!(search.best.unwrap().1, first_of_each_block(32, 30));
    }

    #[test]
    fn a_search_out_of_steps_keeps_the_best_selection_found() {
        // A first limit that constrains nothing leaves the bound blind to the blocks.
        let (scores, mut limits, members) = blocks(300, 30);
        limits.insert(0, one_per_value((0..300).collect()));
        let mut search = Search::new(&scores, &limits, &members, 10, false, SEARCH_STEP_BUDGET);
        search.run();
        assert!(search.gave_up && search.steps > SEARCH_STEP_BUDGET);
        let (_, chosen) = search.best.expect("the greedy selection comes first");
        assert_eq!(chosen, first_of_each_block(10, 30));
    }

    #[test]
    fn an_infeasible_search_ends_empty() {
        let (scores, limits, members) = blocks(30, 3);
        let mut search = Search::new(&scores, &limits, &members, 11, false, SEARCH_STEP_BUDGET);
        search.run();
        assert!(search.best.is_none() && !search.gave_up);
    }

    #[test]
    fn every_group_gets_at_least_its_greedy_steps() {
        assert_eq!(share(0, 3, 100, 4), 500);
        assert_eq!(share(SEARCH_STEP_BUDGET, 2, 100, 4), SEARCH_STEP_BUDGET / 2);
    }
}
