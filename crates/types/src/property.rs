//! The rules for property keys, namespaces and values, shared by every property container.
//!
//! A key is a path of namespace segments separated by `/` (`DrbdOptions/Net/protocol`,
//! `Aux/rack`). Each segment is made of letters, digits, `_`, `-`, `.` and `:`, and is neither
//! empty nor `.` or `..`, so a key is never a relative path and has one spelling only. A
//! namespace (as `delete_namespaces` names it) follows the same rules and may end with one `/`.
//!
//! The rules are written twice, as code and as the regular expressions the OpenAPI document
//! publishes; a test checks that the two agree. What to answer when a rule is broken is the
//! controller's business.

/// The longest key accepted, in characters.
pub const MAX_KEY_LEN: usize = 256;

/// The longest value accepted, in characters.
pub const MAX_VALUE_LEN: usize = 4096;

/// One segment of a key, unanchored: not `.` or `..`.
macro_rules! segment {
    () => {
        "(?:\\.{0,2}[A-Za-z0-9_:-]|\\.{3})[A-Za-z0-9_.:-]*"
    };
}

/// A key, unanchored: segments separated by single slashes.
macro_rules! key {
    () => {
        concat!(segment!(), "(?:/", segment!(), ")*")
    };
}

/// One character of a value: anything but a control character other than tab.
macro_rules! value_character {
    () => {
        "[^\\u0000-\\u0008\\u000A-\\u001F\\u007F-\\u009F]"
    };
}

/// A key as a regular expression (ECMA, Python and Rust syntax alike).
pub const KEY_PATTERN: &str = concat!("^", key!(), "$");

/// A namespace: a key, optionally followed by one `/`.
pub const NAMESPACE_PATTERN: &str = concat!("^", key!(), "/?$");

/// A value: no control characters other than tab.
pub const VALUE_PATTERN: &str = concat!("^", value_character!(), "*$");

/// A list filter: `Key` (the key is set) or `Key=Value` (it is set to Value).
pub const FILTER_PATTERN: &str = concat!("^", key!(), "(?:=", value_character!(), "*)?$");

/// Why a key, namespace or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {length} characters long, the limit is {MAX_KEY_LEN}")]
    KeyTooLong { length: usize },
    #[error("the key '{key}' has an empty namespace segment")]
    EmptySegment { key: String },
    #[error("the key '{key}' has the segment '{segment}', which would make it a relative path")]
    DotSegment { key: String, segment: String },
    #[error("the key '{key}' contains the invalid character {character:?}")]
    InvalidCharacter { key: String, character: char },
    #[error("the value of '{key}' is {length} characters long, the limit is {MAX_VALUE_LEN}")]
    ValueTooLong { key: String, length: usize },
    #[error("the value of '{key}' contains control characters")]
    ControlCharacter { key: String },
}

/// Checks a property key.
pub fn check_key(key: &str) -> Result<(), PropertyError> {
    if key.is_empty() {
        return Err(PropertyError::EmptyKey);
    }
    let length = key.chars().count();
    if length > MAX_KEY_LEN {
        return Err(PropertyError::KeyTooLong { length });
    }
    if let Some(character) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.' | ':')))
    {
        return Err(PropertyError::InvalidCharacter {
            key: key.to_string(),
            character,
        });
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(PropertyError::EmptySegment {
                    key: key.to_string(),
                });
            }
            "." | ".." => {
                return Err(PropertyError::DotSegment {
                    key: key.to_string(),
                    segment: segment.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a namespace and returns it without its trailing `/`, if it had one.
pub fn check_namespace(namespace: &str) -> Result<&str, PropertyError> {
    let trimmed = namespace.strip_suffix('/').unwrap_or(namespace);
    check_key(trimmed)?;
    Ok(trimmed)
}

/// Checks a list filter, `Key` or `Key=Value`.
pub fn check_filter(filter: &str) -> Result<(), PropertyError> {
    match filter.split_once('=') {
        Some((key, value)) => check_key(key).and_then(|()| check_value(key, value)),
        None => check_key(filter),
    }
}

/// Checks a property value.
pub fn check_value(key: &str, value: &str) -> Result<(), PropertyError> {
    let length = value.chars().count();
    if length > MAX_VALUE_LEN {
        return Err(PropertyError::ValueTooLong {
            key: key.to_string(),
            length,
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(PropertyError::ControlCharacter {
            key: key.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys() {
        assert!(check_key("Aux/rack").is_ok());
        assert!(check_key("DrbdOptions/Net/protocol").is_ok());
        assert!(check_key("Aux/.hidden").is_ok());
        assert!(check_key("Aux/...").is_ok());
        assert!(check_key("Aux/v1.2").is_ok());
        assert_eq!(check_key(""), Err(PropertyError::EmptyKey));
        assert!(matches!(
            check_key("/Aux"),
            Err(PropertyError::EmptySegment { .. })
        ));
        assert!(matches!(
            check_key("Aux/"),
            Err(PropertyError::EmptySegment { .. })
        ));
        assert!(matches!(
            check_key("Aux//x"),
            Err(PropertyError::EmptySegment { .. })
        ));
        assert!(matches!(
            check_key("Aux/../StorDriver/StorPoolName"),
            Err(PropertyError::DotSegment { .. })
        ));
        assert!(matches!(
            check_key(".."),
            Err(PropertyError::DotSegment { .. })
        ));
        assert!(matches!(
            check_key("Aux/./a"),
            Err(PropertyError::DotSegment { .. })
        ));
        assert!(matches!(
            check_key("Aux/ra ck"),
            Err(PropertyError::InvalidCharacter { .. })
        ));
        assert!(matches!(
            check_key(&"a".repeat(300)),
            Err(PropertyError::KeyTooLong { length: 300 })
        ));
    }

    #[test]
    fn namespaces_may_end_with_one_slash() {
        assert_eq!(check_namespace("Aux"), Ok("Aux"));
        assert_eq!(check_namespace("Aux/"), Ok("Aux"));
        assert!(check_namespace("Aux//").is_err());
        assert!(check_namespace("/").is_err());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("Aux/..").is_err());
        assert!(check_namespace("../").is_err());
    }

    #[test]
    fn values() {
        assert!(check_value("k", "tab\tis fine, ünïcode too").is_ok());
        assert!(check_value("k", "line\nbreak").is_err());
        assert!(check_value("k", "\u{85}").is_err());
        assert!(check_value("k", &"é".repeat(MAX_VALUE_LEN)).is_ok());
        assert!(check_value("k", &"v".repeat(MAX_VALUE_LEN + 1)).is_err());
    }

    fn fits(pattern: &str, value: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(value)
    }

    proptest! {
        #[test]
        fn key_pattern_agrees_with_the_check(key in "[a-z./: ]{0,12}") {
            prop_assert_eq!(fits(KEY_PATTERN, &key), check_key(&key).is_ok(), "{:?}", key);
            prop_assert_eq!(
                fits(NAMESPACE_PATTERN, &key),
                check_namespace(&key).is_ok(),
                "{:?}", key
            );
        }

        #[test]
        fn filter_pattern_agrees_with_the_check(filter in "[a-z/.=\\n ]{0,10}") {
            prop_assert_eq!(fits(FILTER_PATTERN, &filter), check_filter(&filter).is_ok(), "{:?}", filter);
        }

        #[test]
        fn value_pattern_agrees_with_the_check(value in "(.|\\t|\\n|\\u{7f}|\\u{85}|\\u{9f}|\\u{a0}){0,8}") {
            prop_assert_eq!(fits(VALUE_PATTERN, &value), check_value("k", &value).is_ok(), "{:?}", value);
        }
    }
}
