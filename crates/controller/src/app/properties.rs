//! Property containers: the override/delete/delete-namespace edit every object shares, and the
//! refusal of keys, namespaces and values that break `ferrite_types::property`'s rules, and of
//! `DrbdOptions/*` properties that are no DRBD option or whose value DRBD does not take
//! (`ferrite_drbd::options`, the table drbdsetup describes).

use ferrite_types::api_call_rc::code;
use ferrite_types::property;
use ferrite_types::rest::Props;

use super::{Context, Failure};

/// The prefix of the properties that configure a replication layer, LINSTOR's.
pub const DRBD_OPTIONS_PREFIX: &str = "DrbdOptions/";

/// Checks a property key (the rules are `ferrite_types::property`'s); the error is the cause
/// to answer with.
pub fn check_key(key: &str) -> Result<(), String> {
    property::check_key(key).map_err(|e| e.to_string())
}

/// Checks a property value: the rules every value keeps, and the values of the keys the
/// controller itself reads.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    property::check_value(key, value).map_err(|e| e.to_string())?;
    if key == super::engine::PROP_REPLICATION_ENGINE {
        super::engine::check_value(value)?;
    }
    Ok(())
}

/// Checks a `DrbdOptions/<Section>/<option>` property against DRBD's options; other keys pass.
pub fn check_drbd_option(key: &str, value: &str) -> Result<(), String> {
    match key.strip_prefix(DRBD_OPTIONS_PREFIX) {
        Some(option) => ferrite_drbd::options::check(option, value).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Validates every key and value of `props`.
pub fn check_all(ctx: &Context, props: &Props) -> Result<(), Failure> {
    for (key, value) in props {
        check_key(key)
            .and_then(|()| check_value(key, value))
            .map_err(|cause| invalid_prop(ctx, cause))?;
        check_drbd_option(key, value).map_err(|cause| {
            Failure::from(
                ctx.error(
                    code::FAIL_INVLD_PROP,
                    format!("Invalid DRBD option '{key}'."),
                )
                .cause(cause)
                .correction(
                    "Use DrbdOptions/<Section>/<option> with a section (Resource, Net, Disk, \
                         PeerDevice, Handlers), an option of that section and a value DRBD \
                         takes ('drbdsetup xml-help net-options' and the like list them); \
                         nothing was changed.",
                ),
            )
        })?;
    }
    Ok(())
}

fn invalid_prop(ctx: &Context, cause: String) -> Failure {
    ctx.error(code::FAIL_INVLD_PROP, "Invalid property.")
        .cause(cause)
        .correction(
            "Use keys made of namespace segments separated by '/' (e.g. 'Aux/rack'), with letters, \
             digits, '_', '-', '.' and ':', no empty, '.' or '..' segment, and printable values.",
        )
        .into()
}

/// The result of an edit: the new container and the entries to answer before the object's
/// "modified" one: LINSTOR's "Successfully set property key(s)" when keys were set, then a
/// warning for each deleted key that was not set.
pub struct Edited {
    pub props: Props,
    pub entries: Vec<ferrite_types::ApiCallRc>,
    pub changed: bool,
}

/// Applies LINSTOR's modify body to `current`.
pub fn edit(
    ctx: &Context,
    current: &Props,
    override_props: &Props,
    delete_props: &[String],
    delete_namespaces: &[String],
) -> Result<Edited, Failure> {
    check_all(ctx, override_props)?;
    let mut props = current.clone();
    let mut entries = Vec::new();
    if !override_props.is_empty() {
        entries.push(set_entry(ctx, override_props));
    }
    for key in delete_props {
        check_key(key).map_err(|cause| invalid_prop(ctx, cause))?;
        if props.remove(key).is_none() {
            entries.push(ctx.warn(
                code::WARN_DEL_UNSET_PROP,
                format!("Property '{key}' was not set."),
            ));
        }
    }
    for namespace in delete_namespaces {
        let namespace = property::check_namespace(namespace)
            .map_err(|cause| invalid_prop(ctx, cause.to_string()))?;
        let prefix = format!("{namespace}/");
        props.retain(|key, _| !key.starts_with(&prefix));
    }
    for (key, value) in override_props {
        props.insert(key.clone(), value.clone());
    }
    let changed = &props != current;
    Ok(Edited {
        props,
        entries,
        changed,
    })
}

/// LINSTOR's answer to properties being set on an object: a success entry with the object's
/// mask and the create bits, naming every key, before the object's own "modified" entry.
pub fn set_entry(ctx: &Context, override_props: &Props) -> ferrite_types::ApiCallRc {
    let keys: Vec<&str> = override_props.keys().map(String::as_str).collect();
    Context::new(super::Operation::Create, ctx.object).created(format!(
        "Successfully set property key(s): {}",
        keys.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Object, Operation};

    const CTX: Context = Context::new(Operation::Modify, Object::Node);

    #[test]
    fn keys() {
        assert!(check_key("Aux/rack").is_ok());
        assert!(check_key("DrbdOptions/Net/protocol").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("/Aux").is_err());
        assert!(check_key("Aux//x").is_err());
        assert!(check_key("Aux/../x").is_err());
        assert!(check_key("Aux/ra ck").is_err());
        assert!(check_key(&"a".repeat(300)).is_err());
    }

    #[test]
    fn namespaces_are_checked_like_keys_and_change_nothing_when_refused() {
        let mut current = Props::new();
        current.insert("Aux/a".into(), "1".into());
        for bad in ["", "/", "Aux//", "..", "Aux/../Aux", "A ux"] {
            assert!(
                edit(&CTX, &current, &Props::new(), &[], &[bad.to_string()]).is_err(),
                "{bad:?}"
            );
        }
        let edited = edit(&CTX, &current, &Props::new(), &[], &["Aux/".to_string()]).unwrap();
        assert!(edited.props.is_empty());
    }

    #[test]
    fn edit_overrides_deletes_and_warns_on_unset() {
        let mut current = Props::new();
        current.insert("Aux/a".into(), "1".into());
        current.insert("Aux/ns/b".into(), "2".into());
        current.insert("Other/c".into(), "3".into());
        let mut overrides = Props::new();
        overrides.insert("Aux/d".into(), "4".into());
        let edited = edit(
            &CTX,
            &current,
            &overrides,
            &["Aux/a".into(), "Aux/zz".into()],
            &["Aux/ns".into()],
        )
        .unwrap();
        assert_eq!(edited.props.len(), 2);
        assert_eq!(edited.props["Aux/d"], "4");
        assert_eq!(edited.props["Other/c"], "3");
        assert_eq!(edited.entries.len(), 2);
        assert_eq!(
            edited.entries[0].message,
            "Successfully set property key(s): Aux/d"
        );
        assert!(!edited.entries[0].is_error() && !edited.entries[0].ret_code().is_warning());
        assert!(edited.entries[1].ret_code().is_warning());
        assert!(edited.changed);
    }

    #[test]
    fn the_replication_engine_takes_auto_drbd_or_mirror() {
        let mut overrides = Props::new();
        overrides.insert("Ferrite/ReplicationEngine".into(), "Mirror".into());
        assert!(edit(&CTX, &Props::new(), &overrides, &[], &[]).is_ok());
        overrides.insert("Ferrite/ReplicationEngine".into(), "kernel".into());
        let err = edit(&CTX, &Props::new(), &overrides, &[], &[])
            .err()
            .unwrap();
        assert!(
            err.0[0]
                .cause
                .as_deref()
                .unwrap()
                .contains("auto, drbd or mirror")
        );
    }

    #[test]
    fn drbd_options_must_be_options_drbd_takes() {
        let refused = |key: &str, value: &str| {
            let mut overrides = Props::new();
            overrides.insert(key.into(), value.into());
            let err = edit(&CTX, &Props::new(), &overrides, &[], &[])
                .err()
                .unwrap();
            assert_eq!(err.0[0].ret_code as u64 & 0x7fff, code::FAIL_INVLD_PROP);
            err.0[0].cause.clone().unwrap()
        };
        assert_eq!(
            refused("DrbdOptions/Net/protocl", "C"),
            "'Net/protocl' is not a DRBD option: the Net section has no option 'protocl'"
        );
        assert_eq!(
            refused("DrbdOptions/Disk/al-extents", "9"),
            "'9' is not a valid value of 'Disk/al-extents': out of range 67..65534"
        );
        assert_eq!(
            refused("DrbdOptions/Resource/on-no-quorum", "panic"),
            "'panic' is not a valid value of 'Resource/on-no-quorum': takes one of io-error, suspend-io"
        );
        assert!(refused("DrbdOptions/Netz/protocol", "C").contains("names no section"));
        let mut fine = Props::new();
        fine.insert("DrbdOptions/Net/protocol".into(), "A".into());
        fine.insert("DrbdOptions/PeerDevice/c-max-rate".into(), "250M".into());
        fine.insert(
            "DrbdOptions/auto-add-quorum-tiebreaker".into(),
            "False".into(),
        );
        assert!(edit(&CTX, &Props::new(), &fine, &[], &[]).is_ok());
    }

    #[test]
    fn bad_values_are_refused() {
        let mut overrides = Props::new();
        overrides.insert("Aux/a".into(), "line\nbreak".into());
        assert!(edit(&CTX, &Props::new(), &overrides, &[], &[]).is_err());
    }
}
