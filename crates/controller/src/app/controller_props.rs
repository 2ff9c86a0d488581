//! Controller-wide properties.

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::PropsModify;

use super::{Context, Failure, Object, Operation, Plan, properties};
use crate::model::{Cluster, Op};

const MODIFY: Context = Context::new(Operation::Modify, Object::Controller);

/// `POST /v1/controller/properties`.
pub fn modify(cluster: &Cluster, body: &PropsModify) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    let edited = properties::edit(
        ctx,
        &cluster.props,
        &body.override_props,
        &body.delete_props,
        &body.delete_namespaces,
    )?;
    let mut plan = Plan::new();
    for key in cluster
        .props
        .keys()
        .filter(|k| !edited.props.contains_key(*k))
    {
        plan.op(Op::DeleteControllerProp { key: key.clone() });
    }
    for (key, value) in &edited.props {
        if cluster.props.get(key) != Some(value) {
            plan.op(Op::SetControllerProp {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    // LINSTOR answers one entry per key set on the controller, with its value, where other
    // objects get one entry naming every key.
    let created = Context::new(Operation::Create, Object::Controller);
    for (key, value) in &body.override_props {
        plan.reply(created.created(format!(
            "Successfully set property '{key}' to value '{value}'"
        )));
    }
    plan.replies.extend(
        edited
            .entries
            .into_iter()
            .skip(usize::from(!body.override_props.is_empty())),
    );
    let has_mirror = cluster
        .resource_definitions
        .values()
        .any(|rd| super::engine::effective(cluster, rd) == Some(ferrite_types::LayerKind::Mirror));
    if has_mirror {
        plan.replies.extend(super::engine::ignored_options_note(
            ctx,
            body.override_props.keys(),
            "the controller",
        ));
    }
    plan.reply(ctx.success(code::MODIFIED, "Controller properties modified."));
    Ok(plan)
}

/// `DELETE /v1/controller/properties/{key}`.
pub fn delete(cluster: &Cluster, key: &str) -> Result<Plan, Failure> {
    let ctx = &MODIFY;
    properties::check_key(key).map_err(|cause| {
        Failure::from(
            ctx.error(code::FAIL_INVLD_PROP, "Invalid property key.")
                .cause(cause)
                .correction(
                    "Give the key as it is set, e.g. 'Aux/rack': namespace segments separated by \
                     '/', made of letters, digits, '_', '-', '.' and ':'.",
                ),
        )
    })?;
    let mut plan = Plan::new();
    if cluster.props.contains_key(key) {
        plan.op(Op::DeleteControllerProp {
            key: key.to_string(),
        });
        plan.reply(ctx.success(
            code::DELETED,
            format!("Controller property '{key}' deleted."),
        ));
    } else {
        plan.reply(ctx.warn(
            code::WARN_DEL_UNSET_PROP,
            format!("Controller property '{key}' was not set."),
        ));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_an_invalid_key_says_how_keys_look() {
        let err = delete(&Cluster::default(), "Aux/bad key").unwrap_err();
        assert_eq!(err.0[0].ret_code().code(), code::FAIL_INVLD_PROP);
        assert!(err.0[0].cause.as_deref().unwrap().contains("' '"));
        assert!(
            err.0[0]
                .correction
                .as_deref()
                .unwrap()
                .contains("'Aux/rack'")
        );
    }
}
