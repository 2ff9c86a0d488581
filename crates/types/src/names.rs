//! Typed object names that validate on construction.
//!
//! LINSTOR names are case-insensitive: `node1` and `NODE1` are the same node, and the name keeps
//! the spelling it was created with for display. Every name type here compares, orders and hashes
//! by its upper-cased key and displays its original spelling, so maps keyed by names behave the
//! way LINSTOR users expect.
//!
//! Invalid input is refused with a [`NameError`] that says what was wrong and how to correct it;
//! the REST layer turns it into an `ApiCallRc` with the matching `FAIL_INVLD_*` code.
//!
//! Each rule is also written as a regular expression with length bounds, which the OpenAPI
//! document publishes as `pattern`, `minLength` and `maxLength` (every name type is a schema);
//! a test checks that expression and validator agree.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {kind} name '{value}': {reason}")]
pub struct NameError {
    /// What kind of object the name was for ("resource", "node", ...).
    pub kind: &'static str,
    /// The name as given.
    pub value: String,
    /// What rule it broke.
    pub reason: String,
    /// The rule, spelled out as a correction for the user.
    pub rule: &'static str,
}

impl NameError {
    /// A sentence telling the user what a valid name looks like.
    pub fn correction(&self) -> String {
        format!("Use a {} name that {}.", self.kind, self.rule)
    }
}

/// LINSTOR's identifiers (resources, groups, pools, interfaces): a letter or `_`, then letters,
/// digits, `_` and `-`. Lengths are each name's own.
pub const IDENTIFIER_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_-]*$";

/// Host names: dot-separated labels of 1 to 63 letters, digits, `-` and `_`, a label neither
/// starting nor ending with `-`.
pub const HOST_NAME_PATTERN: &str = concat!(
    "^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?",
    "(?:\\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$"
);

/// The character rules shared by LINSTOR's identifiers.
struct NameRule {
    kind: &'static str,
    min: usize,
    max: usize,
    rule: &'static str,
    /// The rule as a regular expression (without the length bounds).
    pattern: &'static str,
}

impl NameRule {
    fn error(&self, value: &str, reason: String) -> NameError {
        NameError {
            kind: self.kind,
            value: value.to_string(),
            reason,
            rule: self.rule,
        }
    }

    fn check_length(&self, value: &str) -> Result<(), NameError> {
        let len = value.chars().count();
        if len < self.min || len > self.max {
            return Err(self.error(
                value,
                format!(
                    "it is {len} characters long, but must be {} to {}",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }

    /// LINSTOR's `nameCheck`: first character a letter or `_`, the rest letters, digits, `_`, `-`.
    fn check_identifier(&self, value: &str) -> Result<(), NameError> {
        self.check_length(value)?;
        if let Some(first) = value.chars().next()
            && !(first.is_ascii_alphabetic() || first == '_')
        {
            return Err(self.error(
                value,
                format!("it starts with '{first}', but must start with a letter or '_'"),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(self.error(value, format!("it contains the invalid character {bad:?}")));
        }
        Ok(())
    }

    /// Host names: dot-separated labels of letters, digits, '-' and '_', each 1 to 63
    /// characters, a label neither starting nor ending with '-'.
    fn check_host_name(&self, value: &str) -> Result<(), NameError> {
        self.check_length(value)?;
        for label in value.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(self.error(
                    value,
                    "each dot-separated part must be 1 to 63 characters long".to_string(),
                ));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(self.error(value, format!("it contains the invalid character {bad:?}")));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(self.error(value, "a part may not start or end with '-'".to_string()));
            }
        }
        Ok(())
    }
}

/// A name's spelling and its upper-cased key in one allocation: the spelling, then the key.
/// Every name rule admits ASCII only, so upper-casing keeps the length and the key is the
/// second half. (Two `String`s cost two allocations and 48 bytes a name; at 100,000 resources
/// on two nodes each, the controller holds well over half a million names.) Clones share the
/// allocation: the controller gives each resource its node's own name (`Cluster::share_names`),
/// and two clones compare equal without reading their text.
#[derive(Clone)]
struct SpellingAndKey(std::sync::Arc<str>);

impl SpellingAndKey {
    /// `value` must be ASCII, which every name rule checks first.
    fn new(value: &str) -> Self {
        debug_assert!(value.is_ascii(), "names are checked to be ASCII first");
        let mut text = String::with_capacity(value.len() * 2);
        text.push_str(value);
        text.push_str(value);
        text[value.len()..].make_ascii_uppercase();
        SpellingAndKey(text.into())
    }

    /// Whether both are clones of one name: then they are equal without a look at the text.
    fn same(&self, other: &SpellingAndKey) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    fn spelling(&self) -> &str {
        &self.0[..self.0.len() / 2]
    }

    fn key(&self) -> &str {
        &self.0[self.0.len() / 2..]
    }
}

/// Decodes a name from the text the decoder holds, borrowed or not.
struct NameVisitor<T> {
    kind: &'static str,
    make: fn(&str) -> Result<T, NameError>,
}

impl<T> NameVisitor<T> {
    fn new(kind: &'static str, make: fn(&str) -> Result<T, NameError>) -> Self {
        NameVisitor { kind, make }
    }
}

impl<T> serde::de::Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name", self.kind)
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<T, E> {
        (self.make)(value).map_err(E::custom)
    }
}

macro_rules! case_insensitive_name {
    ($(#[$doc:meta])* $name:ident, $rule:expr, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            /// The spelling, then its upper-cased key: see [`SpellingAndKey`].
            text: SpellingAndKey,
        }

        impl $name {
            const RULE: NameRule = $rule;

            /// Validates `value` and makes a name of it.
            pub fn new(value: impl AsRef<str>) -> Result<Self, NameError> {
                let value = value.as_ref();
                Self::RULE.$check(value)?;
                Ok(Self { text: SpellingAndKey::new(value) })
            }

            /// The name as it was spelled when created.
            pub fn as_str(&self) -> &str {
                self.text.spelling()
            }

            /// The upper-cased form that comparisons use.
            pub fn key(&self) -> &str {
                self.text.key()
            }

            /// Whether `other` is a clone of this name, sharing its text (not merely equal).
            pub fn shares_text_with(&self, other: &Self) -> bool {
                self.text.same(&other.text)
            }

            /// The fewest and most characters a name may have.
            pub const LENGTH: std::ops::RangeInclusive<usize> = Self::RULE.min..=Self::RULE.max;

            /// The character rule as a regular expression (without the length bounds).
            pub const PATTERN: &str = Self::RULE.pattern;
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .min_length(Some(Self::RULE.min))
                    .max_length(Some(Self::RULE.max))
                    .pattern(Some(Self::RULE.pattern))
                    .description(Some(format!(
                        "A {} name that {}; compared case-insensitively.",
                        Self::RULE.kind,
                        Self::RULE.rule
                    )))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.as_str())
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.text.same(&other.text) || self.key() == other.key()
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                if self.text.same(&other.text) {
                    return Ordering::Equal;
                }
                self.key().cmp(other.key())
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.key().hash(state);
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                // Checked where the decoder holds the text: no copy of it is made first.
                deserializer.deserialize_str(NameVisitor::<Self>::new(Self::RULE.kind, |value| {
                    Self::new(value)
                }))
            }
        }
    };
}

case_insensitive_name!(
    /// A node (host) name, e.g. `node1`.
    NodeName,
    NameRule { kind: "node", min: 2, max: 255, rule: "is a valid host name (letters, digits, '-', '_' and dots; 2 to 255 characters)", pattern: HOST_NAME_PATTERN },
    check_host_name
);
case_insensitive_name!(
    /// A resource definition's name (and so its resources' names), e.g. `my_ssd_res`.
    ResourceName,
    NameRule { kind: "resource", min: 2, max: 48, rule: "is 2 to 48 characters long, starts with a letter or '_', continues with letters, digits, '_' or '-'", pattern: IDENTIFIER_PATTERN },
    check_identifier
);
case_insensitive_name!(
    /// A resource group's name, e.g. `my_ssd_group`.
    ResourceGroupName,
    NameRule { kind: "resource group", min: 2, max: 48, rule: "is 2 to 48 characters long, starts with a letter or '_', continues with letters, digits, '_' or '-'", pattern: IDENTIFIER_PATTERN },
    check_identifier
);
case_insensitive_name!(
    /// A storage pool's name, e.g. `pool_ssd`; the same name on several nodes forms one
    /// storage pool definition.
    StorPoolName,
    NameRule { kind: "storage pool", min: 3, max: 48, rule: "is 3 to 48 characters long, starts with a letter or '_', continues with letters, digits, '_' or '-'", pattern: IDENTIFIER_PATTERN },
    check_identifier
);
case_insensitive_name!(
    /// A snapshot's name.
    SnapshotName,
    NameRule { kind: "snapshot", min: 2, max: 48, rule: "is 2 to 48 characters long, starts with a letter or '_', continues with letters, digits, '_' or '-'", pattern: IDENTIFIER_PATTERN },
    check_identifier
);
case_insensitive_name!(
    /// A node's network interface name, e.g. `default`.
    NetInterfaceName,
    NameRule { kind: "net interface", min: 2, max: 32, rule: "is 2 to 32 characters long, starts with a letter or '_', continues with letters, digits, '_' or '-'", pattern: IDENTIFIER_PATTERN },
    check_identifier
);

impl ResourceName {
    /// `all` is reserved by LINSTOR (drbdadm uses it for every resource).
    pub fn new_checked(value: impl AsRef<str>) -> Result<Self, NameError> {
        let name = Self::new(value)?;
        if name.key() == "ALL" {
            return Err(Self::RULE.error(name.as_str(), "'all' is a reserved word".to_string()));
        }
        Ok(name)
    }
}

/// The number of a volume within a resource definition (0 is the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct VolumeNumber(u16);

impl VolumeNumber {
    /// The highest volume number LINSTOR allows.
    pub const MAX: i64 = u16::MAX as i64;

    /// Validates a volume number from the wire.
    pub fn new(value: i64) -> Result<Self, NameError> {
        u16::try_from(value)
            .map(VolumeNumber)
            .map_err(|_| NameError {
                kind: "volume number",
                value: value.to_string(),
                reason: format!("it must be between 0 and {}", Self::MAX),
                rule: "is between 0 and 65535",
            })
    }

    /// The number as an integer.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl utoipa::PartialSchema for VolumeNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(0))
            .maximum(Some(Self::MAX))
            .description(Some(
                "The number of a volume within its resource definition or group.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for VolumeNumber {}

impl From<u16> for VolumeNumber {
    fn from(value: u16) -> Self {
        VolumeNumber(value)
    }
}

impl TryFrom<i64> for VolumeNumber {
    type Error = NameError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        VolumeNumber::new(value)
    }
}

impl From<VolumeNumber> for i64 {
    fn from(value: VolumeNumber) -> Self {
        i64::from(value.0)
    }
}

impl fmt::Display for VolumeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_compare_case_insensitively_and_keep_their_spelling() {
        let a = ResourceName::new("My_Res").unwrap();
        let b = ResourceName::new("my_res").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "My_Res");
        assert_eq!(a.key(), "MY_RES");
    }

    #[test]
    fn clones_share_their_text_and_equal_names_compare_equal_either_way() {
        let a = NodeName::new("Node1").unwrap();
        let clone = a.clone();
        let equal = NodeName::new("NODE1").unwrap();
        assert!(clone.shares_text_with(&a));
        assert!(!equal.shares_text_with(&a));
        assert_eq!(clone, a);
        assert_eq!(equal, a);
        assert_eq!(clone.cmp(&a), Ordering::Equal);
        assert_eq!(equal.cmp(&a), Ordering::Equal);
        assert_eq!(NodeName::new("node2").unwrap().cmp(&a), Ordering::Greater);
        assert_eq!(clone.as_str(), "Node1");
    }

    #[test]
    fn a_name_is_one_allocation_and_decodes_from_any_text_the_decoder_holds() {
        assert_eq!(std::mem::size_of::<NodeName>(), 16);
        let name = NodeName::new("Node-1.example").unwrap();
        assert_eq!(name.as_str(), "Node-1.example");
        assert_eq!(name.key(), "NODE-1.EXAMPLE");
        // Borrowed from the input, unescaped into a scratch buffer, and owned.
        let borrowed: NodeName = serde_json::from_str(r#""Node-1.example""#).unwrap();
        let escaped: NodeName = serde_json::from_str(r#""Node\u002d1.example""#).unwrap();
        let owned: NodeName =
            serde_json::from_value(serde_json::Value::String("Node-1.example".into())).unwrap();
        for decoded in [&borrowed, &escaped, &owned] {
            assert_eq!(decoded.as_str(), "Node-1.example");
            assert_eq!(decoded.key(), "NODE-1.EXAMPLE");
        }
        let refused = serde_json::from_str::<NodeName>(r#""n\u00f6de""#).unwrap_err();
        assert!(
            refused.to_string().contains("Invalid node name"),
            "{refused}"
        );
        let not_text = serde_json::from_str::<StorPoolName>("7").unwrap_err();
        assert!(
            not_text.to_string().contains("a storage pool name"),
            "{not_text}"
        );
    }

    #[test]
    fn resource_name_rules() {
        assert!(ResourceName::new("r").is_err(), "too short");
        assert!(ResourceName::new("a".repeat(49)).is_err(), "too long");
        assert!(ResourceName::new("1abc").is_err(), "starts with a digit");
        assert!(ResourceName::new("-abc").is_err(), "starts with '-'");
        assert!(ResourceName::new("ab c").is_err(), "space");
        assert!(ResourceName::new("ab/c").is_err(), "slash");
        assert!(ResourceName::new("pvc-1234_abc").is_ok());
        assert!(ResourceName::new("_x").is_ok());
        assert!(ResourceName::new_checked("ALL").is_err());
    }

    #[test]
    fn errors_say_what_and_how() {
        let err = StorPoolName::new("p").unwrap_err();
        assert!(
            err.to_string().contains("Invalid storage pool name 'p'"),
            "{err}"
        );
        assert!(err.to_string().contains("3 to 48"), "{err}");
        assert!(err.correction().starts_with("Use a storage pool name"));
    }

    #[test]
    fn node_names_are_host_names() {
        assert!(NodeName::new("node1").is_ok());
        assert!(NodeName::new("node1.example.com").is_ok());
        assert!(NodeName::new("10-43-70-2").is_ok());
        assert!(NodeName::new("n").is_err());
        assert!(NodeName::new("-node").is_err());
        assert!(NodeName::new("node..x").is_err());
        assert!(NodeName::new("node one").is_err());
        assert!(NodeName::new("nöde").is_err());
    }

    #[test]
    fn volume_numbers_are_bounded() {
        assert!(VolumeNumber::new(-1).is_err());
        assert!(VolumeNumber::new(65536).is_err());
        assert_eq!(VolumeNumber::new(7).unwrap().get(), 7);
    }

    /// Whether `value` fits the published schema of a name: pattern and length bounds.
    fn fits_schema(pattern: &str, length: std::ops::RangeInclusive<usize>, value: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(value)
            && length.contains(&value.chars().count())
    }

    #[test]
    fn schemas_publish_the_rules() {
        let json = serde_json::to_value(<NodeName as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(json["pattern"], HOST_NAME_PATTERN);
        assert_eq!(json["minLength"], 2);
        assert_eq!(json["maxLength"], 255);
        let json = serde_json::to_value(<StorPoolName as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(json["pattern"], IDENTIFIER_PATTERN);
        assert_eq!(json["minLength"], 3);
    }

    proptest! {
        #[test]
        fn host_name_schema_agrees_with_the_validator(
            value in "[a-z0-9_.\\- /Aé]{0,12}|([a-z0-9-]{0,64}\\.){0,4}[a-z0-9-]{0,64}",
        ) {
            prop_assert_eq!(
                fits_schema(NodeName::PATTERN, NodeName::LENGTH, &value),
                NodeName::new(&value).is_ok(),
                "{:?}", value
            );
        }

        #[test]
        fn identifier_schemas_agree_with_the_validators(value in "[A-Za-z0-9_.\\- /é]{0,50}") {
            prop_assert_eq!(
                fits_schema(ResourceName::PATTERN, ResourceName::LENGTH, &value),
                ResourceName::new(&value).is_ok(),
                "{:?}", value
            );
            prop_assert_eq!(
                fits_schema(StorPoolName::PATTERN, StorPoolName::LENGTH, &value),
                StorPoolName::new(&value).is_ok(),
                "{:?}", value
            );
            prop_assert_eq!(
                fits_schema(NetInterfaceName::PATTERN, NetInterfaceName::LENGTH, &value),
                NetInterfaceName::new(&value).is_ok(),
                "{:?}", value
            );
        }

        #[test]
        fn valid_identifiers_round_trip(s in "[A-Za-z_][A-Za-z0-9_-]{1,47}") {
            let name = ResourceName::new(&s).unwrap();
            prop_assert_eq!(name.as_str(), s.as_str());
            let json = serde_json::to_string(&name).unwrap();
            let back: ResourceName = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, name);
        }

        #[test]
        fn identifiers_never_accept_other_characters(
            prefix in "[A-Za-z][A-Za-z0-9]{0,10}",
            bad in "[^A-Za-z0-9_-]",
            suffix in "[A-Za-z0-9]{0,10}",
        ) {
            let s = format!("{prefix}{bad}{suffix}");
            prop_assert!(ResourceName::new(&s).is_err());
        }
    }
}
