//! The key-value store: named property containers that clients keep their own data in
//! (LINSTOR's KVS; python-linstor's `KV`, the Kubernetes and Proxmox drivers use it). An
//! instance exists from its first modification until it is deleted; names are
//! case-insensitive and answered as first spelled.

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::{self, Props, PropsModify};

use super::{Context, Failure, Object, Operation, Plan, not_found, properties};
use crate::model::{Cluster, KeyValueStore, Op};

const MODIFY: Context = Context::new(Operation::Modify, Object::KeyValueStore);
const DELETE: Context = Context::new(Operation::Delete, Object::KeyValueStore);

/// LINSTOR's rules for an instance name: 2 to 48 characters, a letter or `_` first, then
/// letters, digits, `_` and `-`.
fn check_name(ctx: &Context, name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if (2..=48).contains(&name.len()) && first_ok && rest_ok {
        Ok(())
    } else {
        Err(ctx
            .error(
                code::FAIL_INVLD_KVS_NAME,
                format!("Invalid key-value store name '{name}'."),
            )
            .cause("A name has 2 to 48 characters: a letter or '_', then letters, digits, '_' and '-'.")
            .correction("Choose a name such as 'csi_volumes'.")
            .into())
    }
}

/// Keys are stored without a leading `/`, as LINSTOR stores them (python-linstor's `KV` sends
/// its namespace with one).
fn normalized(body: &PropsModify) -> PropsModify {
    let strip = |key: &String| key.strip_prefix('/').unwrap_or(key).to_string();
    PropsModify {
        override_props: body
            .override_props
            .iter()
            .map(|(k, v)| (strip(k), v.clone()))
            .collect::<Props>(),
        delete_props: body.delete_props.iter().map(strip).collect(),
        delete_namespaces: body.delete_namespaces.iter().map(strip).collect(),
    }
}

pub fn view(store: &KeyValueStore) -> rest::KeyValueStore {
    rest::KeyValueStore {
        name: store.name.clone(),
        props: store.props.clone(),
    }
}

/// `GET /v1/key-value-store`.
pub fn list(cluster: &Cluster) -> Vec<rest::KeyValueStore> {
    cluster.key_value_stores.values().map(view).collect()
}

/// `GET /v1/key-value-store/{instance}`: a list of the one instance, as LINSTOR answers.
pub fn show(cluster: &Cluster, name: &str) -> Result<Vec<rest::KeyValueStore>, Failure> {
    let ctx = &MODIFY;
    check_name(ctx, name)?;
    cluster
        .key_value_stores
        .get(&name.to_uppercase())
        .map(|store| vec![view(store)])
        .ok_or_else(|| {
            not_found(
                ctx,
                code::FAIL_NOT_FOUND_KVS,
                "Key-value store",
                name,
                "List them with 'ferrite key-value-store list'.",
            )
        })
}

/// `PUT /v1/key-value-store/{instance}`: creates the instance if it does not exist.
pub fn modify(cluster: &Cluster, name: &str, body: &PropsModify) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    check_name(ctx, name)?;
    let body = normalized(body);
    let current = cluster
        .key_value_stores
        .get(&name.to_uppercase())
        .cloned()
        .unwrap_or_else(|| KeyValueStore {
            name: name.to_string(),
            props: Props::new(),
        });
    let edited = properties::edit(
        ctx,
        &current.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut plan = Plan::new();
    plan.replies.extend(edited.entries);
    plan.op(Op::PutKeyValueStore(KeyValueStore {
        name: current.name.clone(),
        props: edited.props,
    }))
    .reply(
        ctx.modified(format!("Key-value store '{}' modified.", current.name))
            .obj_ref("KeyValueStore", current.name.as_str()),
    );
    Ok(plan)
}

/// `DELETE /v1/key-value-store/{instance}`.
pub fn delete(cluster: &Cluster, name: &str) -> Result<Plan, Failure> {
    let ctx = &DELETE;
    check_name(ctx, name)?;
    let Some(current) = cluster.key_value_stores.get(&name.to_uppercase()) else {
        return Ok(super::nothing_to_delete(
            ctx,
            format!("Key-value store '{name}' not found."),
            format!("Key-value store '{name}' does not exist; nothing was deleted."),
        ));
    };
    let mut plan = Plan::new();
    plan.op(Op::DeleteKeyValueStore(current.name.clone()))
        .reply(
            ctx.deleted(format!("Key-value store '{}' deleted.", current.name))
                .obj_ref("KeyValueStore", current.name.as_str()),
        );
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::apply;

    #[test]
    fn modify_creates_sets_and_deletes_and_names_are_case_insensitive() {
        let mut cluster = Cluster::default();
        let mut body = PropsModify::default();
        body.override_props.insert("/ns/key".into(), "v".into());
        let plan = modify(&cluster, "csi_kv", &body).unwrap();
        apply(&mut cluster, plan);
        let shown = show(&cluster, "CSI_KV").unwrap();
        assert_eq!(shown[0].name, "csi_kv");
        assert_eq!(shown[0].props["ns/key"], "v");
        assert!(modify(&cluster, "1bad", &body).is_err());
        let plan = delete(&cluster, "Csi_Kv").unwrap();
        apply(&mut cluster, plan);
        assert!(list(&cluster).is_empty());
        let again = delete(&cluster, "csi_kv").unwrap();
        assert!(again.ops.is_empty());
        assert_eq!(again.replies[0].ret_code().code(), code::WARN_NOT_FOUND);
    }
}
