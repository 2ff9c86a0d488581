//! Property containers: key rules and the override/delete/delete-namespace edit every object
//! shares.

use ferrite_types::api_call_rc::code;
use ferrite_types::rest::Props;

use super::{Context, Failure};

/// The longest key and value accepted.
pub const MAX_KEY_LEN: usize = 256;
pub const MAX_VALUE_LEN: usize = 4096;

/// Checks a property key: namespaced segments (`DrbdOptions/Net/protocol`, `Aux/rack`) of
/// letters, digits, `_`, `-`, `.` and `:`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the key is empty".to_string());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "the key is {} characters long, the limit is {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if key.split('/').any(str::is_empty) {
        return Err(format!("the key '{key}' has an empty namespace segment"));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "the key '{key}' contains the invalid character {bad:?}"
        ));
    }
    Ok(())
}

/// Checks a property value: printable, bounded.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the value of '{key}' is {} characters long, the limit is {MAX_VALUE_LEN}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("the value of '{key}' contains control characters"));
    }
    Ok(())
}

/// Validates every key and value of `props`.
pub fn check_all(ctx: &Context, props: &Props) -> Result<(), Failure> {
    for (key, value) in props {
        check_key(key)
            .and_then(|()| check_value(key, value))
            .map_err(|cause| invalid_prop(ctx, cause))?;
    }
    Ok(())
}

fn invalid_prop(ctx: &Context, cause: String) -> Failure {
    ctx.error(code::FAIL_INVLD_PROP, "Invalid property.")
        .cause(cause)
        .correction(
            "Use keys made of namespace segments separated by '/' (e.g. 'Aux/rack'), with letters, \
             digits, '_', '-', '.' and ':', and printable values.",
        )
        .into()
}

/// The result of an edit: the new container and warnings (e.g. deleting an unset key).
pub struct Edited {
    pub props: Props,
    pub warnings: Vec<ferrite_types::ApiCallRc>,
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
    let mut warnings = Vec::new();
    for key in delete_props {
        check_key(key).map_err(|cause| invalid_prop(ctx, cause))?;
        if props.remove(key).is_none() {
            warnings.push(ctx.warn(
                code::WARN_DEL_UNSET_PROP,
                format!("Property '{key}' was not set."),
            ));
        }
    }
    for namespace in delete_namespaces {
        let prefix = format!("{}/", namespace.trim_end_matches('/'));
        props.retain(|key, _| !key.starts_with(&prefix));
    }
    for (key, value) in override_props {
        props.insert(key.clone(), value.clone());
    }
    let changed = &props != current;
    Ok(Edited {
        props,
        warnings,
        changed,
    })
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
        assert!(check_key("Aux/ra ck").is_err());
        assert!(check_key(&"a".repeat(300)).is_err());
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
        assert_eq!(edited.warnings.len(), 1);
        assert!(edited.changed);
    }

    #[test]
    fn bad_values_are_refused() {
        let mut overrides = Props::new();
        overrides.insert("Aux/a".into(), "line\nbreak".into());
        assert!(edit(&CTX, &Props::new(), &overrides, &[], &[]).is_err());
    }
}
