//! The wording of a refusal as a whole: the request's criteria and the summary that puts them
//! together with every rejection. The individual reasons are worded where they are found
//! ([`crate::filter`], [`crate::rules`], [`crate::select`]).

use std::fmt::Write;

use ferrite_types::size::format_kib;

use crate::filter::list;
use crate::{Refusal, Request};

/// The request's criteria, one phrase each, in the order the filters apply them.
pub(crate) fn criteria(request: &Request, existing_diskful: usize) -> Vec<String> {
    let mut out = vec![format!(
        "{} diskful replica(s) in total, {existing_diskful} existing",
        request.place_count
    )];
    if request.size_kib > 0 {
        out.push(format!(
            "{} free in one storage pool",
            format_kib(request.size_kib)
        ));
    }
    if !request.node_name_list.is_empty() {
        out.push(format!("nodes {}", list(&request.node_name_list)));
    }
    if !request.layer_stack.is_empty() {
        out.push(format!("layers {}", list(&request.layer_stack)));
    }
    if !request.storage_pools.is_empty() {
        out.push(format!("storage pools {}", list(&request.storage_pools)));
    }
    if !request.provider_list.is_empty() {
        out.push(format!("providers {}", list(&request.provider_list)));
    }
    if !request.replicas_on_same.is_empty() {
        out.push(format!(
            "replicas-on-same {}",
            list(&request.replicas_on_same)
        ));
    }
    if !request.replicas_on_different.is_empty() {
        out.push(format!(
            "replicas-on-different {}",
            list(&request.replicas_on_different)
        ));
    }
    for (key, n) in &request.x_replicas_on_different {
        out.push(format!("x-replicas-on-different {key} {n}"));
    }
    if !request.do_not_place_with.is_empty() {
        out.push(format!(
            "do-not-place-with {}",
            list(&request.do_not_place_with)
        ));
    }
    if let Some(regex) = &request.do_not_place_with_regex {
        out.push(format!("do-not-place-with-regex '{regex}'"));
    }
    out
}

impl Refusal {
    /// The whole explanation: what was wanted, the criteria, and why each node was not used,
    /// one per line.
    pub fn summary(&self) -> String {
        let resource = match &self.resource {
            Some(resource) => format!("resource '{resource}'"),
            None => "the resource".to_string(),
        };
        let mut out = String::new();
        match &self.invalid_request {
            Some(invalid) => {
                let _ = write!(out, "Cannot place {resource}: {invalid}.");
            }
            None => {
                let possible = match self.found {
                    0 => "none can be placed".to_string(),
                    n => format!("only {n} can be placed"),
                };
                let _ = write!(
                    out,
                    "Cannot place {} new diskful replica(s) of {resource}: {possible}.",
                    self.wanted
                );
            }
        }
        if !self.criteria.is_empty() {
            let _ = write!(out, "\nCriteria: {}.", self.criteria.join("; "));
        }
        if self.rejections.is_empty() {
            out.push_str("\nThere are no candidate nodes.");
        } else {
            out.push_str("\nWhy each node was not used:");
            for rejection in &self.rejections {
                let _ = write!(out, "\n  - {}", rejection.reason);
            }
        }
        out
    }
}
