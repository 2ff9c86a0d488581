//! The rules between replicas: replicas-on-same, replicas-on-different and
//! x-replicas-on-different, over node properties.
//!
//! Owns parsing the rules and what the existing diskful replicas already decide: a fixed value
//! for replicas-on-same, values used up for the others. A node that cannot join the existing
//! replicas is rejected here, with the reason; the choice among the remaining nodes, which must
//! also agree with each other, is [`crate::select`]'s.
//!
//! replicas-on-different is treated as x-replicas-on-different with one replica per value, and
//! nodes lacking the key share one "unset" value, as LINSTOR does.

use std::collections::BTreeMap;

use ferrite_types::NodeName;

use crate::{Candidate, Request};

/// A node property's value, `None` when the node does not have the property.
pub(crate) type Value = Option<String>;

/// How a value reads in a reason.
pub(crate) fn show(key: &str, value: &Value) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => format!("{key} unset"),
    }
}

fn quoted_nodes(nodes: &[&NodeName]) -> String {
    nodes
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One replicas-on-same entry.
#[derive(Debug)]
pub(crate) struct SameRule {
    pub key: String,
    pub requirement: Requirement,
}

#[derive(Debug)]
pub(crate) enum Requirement {
    /// No value decided yet: the new replicas pick one together.
    Free,
    /// Every new replica's node must have this value, for the reason given.
    Value { value: String, because: String },
    /// No node can satisfy the rule, for the reason given.
    Impossible(String),
}

/// One replicas-on-different or x-replicas-on-different entry.
#[derive(Debug)]
pub(crate) struct LimitRule {
    pub key: String,
    /// `None` for replicas-on-different (one per value).
    pub per_value: Option<usize>,
    /// The existing diskful replicas' nodes, by value.
    pub existing: BTreeMap<Value, Vec<NodeName>>,
}

impl LimitRule {
    pub fn cap(&self) -> usize {
        self.per_value.unwrap_or(1)
    }

    /// How many more replicas nodes with `value` may take.
    pub fn remaining(&self, value: &Value) -> usize {
        let used = self.existing.get(value).map_or(0, Vec::len);
        self.cap().saturating_sub(used)
    }

    pub fn name(&self) -> String {
        match self.per_value {
            None => format!("replicas-on-different '{}'", self.key),
            Some(n) => format!("x-replicas-on-different '{}' {n}", self.key),
        }
    }
}

/// The rules of a request, with what the existing replicas decided.
#[derive(Debug)]
pub(crate) struct Rules {
    pub same: Vec<SameRule>,
    pub limits: Vec<LimitRule>,
}

fn split(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once('=') {
        Some((key, value)) => (key.trim(), Some(value.trim())),
        None => (entry.trim(), None),
    }
}

impl Rules {
    pub fn new(request: &Request, candidates: &[&Candidate]) -> Self {
        // The existing diskful replicas whose node properties are known, by node name.
        let mut existing: Vec<&Candidate> = request
            .existing
            .iter()
            .filter(|r| r.diskful)
            .filter_map(|r| candidates.iter().copied().find(|c| c.node == r.node))
            .collect();
        existing.sort_by(|a, b| a.node.cmp(&b.node));
        existing.dedup_by(|a, b| a.node == b.node);

        let same = request
            .replicas_on_same
            .iter()
            .map(|entry| {
                let (key, value) = split(entry);
                SameRule {
                    key: key.to_string(),
                    requirement: same_requirement(key, value, &existing),
                }
            })
            .collect();

        let by_value = |key: &str| {
            let mut map: BTreeMap<Value, Vec<NodeName>> = BTreeMap::new();
            for c in &existing {
                map.entry(c.props.get(key).cloned())
                    .or_default()
                    .push(c.node.clone());
            }
            map
        };
        let mut limits: Vec<LimitRule> = request
            .replicas_on_different
            .iter()
            .map(|entry| {
                let (key, _) = split(entry);
                LimitRule {
                    key: key.to_string(),
                    per_value: None,
                    existing: by_value(key),
                }
            })
            .collect();
        limits.extend(
            request
                .x_replicas_on_different
                .iter()
                .map(|(key, &n)| LimitRule {
                    key: key.trim().to_string(),
                    per_value: Some(n),
                    existing: by_value(key.trim()),
                }),
        );
        Self { same, limits }
    }

    /// The replicas-on-same rules whose value the new replicas choose together.
    pub fn free_same_keys(&self) -> Vec<&str> {
        self.same
            .iter()
            .filter(|r| matches!(r.requirement, Requirement::Free))
            .map(|r| r.key.as_str())
            .collect()
    }

    /// Whether a node can take a replica next to the existing ones.
    pub fn check_node(
        &self,
        node: &NodeName,
        props: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        for rule in &self.same {
            let key = &rule.key;
            if let Requirement::Impossible(reason) = &rule.requirement {
                return Err(format!(
                    "node '{node}' cannot take a replica: replicas-on-same '{key}' cannot be \
                     satisfied because {reason}"
                ));
            }
            let Some(actual) = props.get(key) else {
                return Err(format!(
                    "node '{node}' lacks property '{key}' required by replicas-on-same"
                ));
            };
            if let Requirement::Value { value, because } = &rule.requirement
                && actual != value
            {
                return Err(format!(
                    "node '{node}' has {key}={actual}, but replicas-on-same requires \
                     {key}={value} ({because})"
                ));
            }
        }
        for rule in &self.limits {
            let key = &rule.key;
            let value: Value = props.get(key).cloned();
            if rule.remaining(&value) > 0 {
                continue;
            }
            let holders: Vec<&NodeName> = rule.existing.get(&value).into_iter().flatten().collect();
            let on = quoted_nodes(&holders);
            return Err(match (rule.per_value, &value) {
                (None, Some(v)) => format!(
                    "node '{node}' has {key}={v}, like the existing replica on {on} \
                     (replicas-on-different)"
                ),
                (None, None) => format!(
                    "node '{node}' lacks property '{key}', like the existing replica on {on}; \
                     replicas-on-different allows one replica on nodes without it"
                ),
                (Some(0), _) => format!(
                    "node '{node}' cannot take a replica: x-replicas-on-different '{key}' allows \
                     0 replicas per value"
                ),
                (Some(n), _) => format!(
                    "node '{node}' has {}, which already holds {} replica(s) (on {on}), the most \
                     x-replicas-on-different allows ({n} per value)",
                    show(key, &value),
                    holders.len()
                ),
            });
        }
        Ok(())
    }
}

fn same_requirement(key: &str, explicit: Option<&str>, existing: &[&Candidate]) -> Requirement {
    match explicit {
        Some(value) => {
            if let Some(other) = existing
                .iter()
                .find(|c| c.props.get(key).map(String::as_str) != Some(value))
            {
                return Requirement::Impossible(format!(
                    "the existing replica on '{}' has {}, not {key}={value}",
                    other.node,
                    show(key, &other.props.get(key).cloned())
                ));
            }
            Requirement::Value {
                value: value.to_string(),
                because: "as requested".to_string(),
            }
        }
        None => {
            let Some(first) = existing.first() else {
                return Requirement::Free;
            };
            if let Some(lacking) = existing.iter().find(|c| !c.props.contains_key(key)) {
                return Requirement::Impossible(format!(
                    "the existing replica on '{}' lacks property '{key}'",
                    lacking.node
                ));
            }
            let value = &first.props[key];
            if let Some(other) = existing.iter().find(|c| &c.props[key] != value) {
                return Requirement::Impossible(format!(
                    "the existing replicas already differ: '{}' has {key}={value}, '{}' has \
                     {key}={}",
                    first.node, other.node, other.props[key]
                ));
            }
            let nodes: Vec<&NodeName> = existing.iter().map(|c| &c.node).collect();
            Requirement::Value {
                value: value.clone(),
                because: format!(
                    "the value of the existing replica on {}",
                    quoted_nodes(&nodes)
                ),
            }
        }
    }
}
