//! The enumerations of the object model: provider kinds, layer kinds, node types,
//! encryption types and connection states.
//!
//! Input is accepted in any case and with `-` for `_` (`python-linstor` sends `combined` and
//! `plain` in lower case); output is always LINSTOR's canonical upper-case spelling. The OpenAPI
//! schema of each enumeration says exactly that: the canonical values, or a pattern that admits
//! every spelling the parser takes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that is not one of an enumeration's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {kind}; valid values are: {valid}")]
pub struct UnknownKind {
    pub kind: &'static str,
    pub value: String,
    pub valid: String,
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical (upper-case) spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            fn unknown(value: &str) -> UnknownKind {
                UnknownKind {
                    kind: $kind,
                    value: value.to_string(),
                    valid: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownKind;
            /// Any case, `-` or `_`; no surrounding blanks (the CLI trims what users type).
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                let wanted = value.replace('-', "_");
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(&wanted))
                    .ok_or_else(|| Self::unknown(value))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                value.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                AnyOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names.clone())))
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(any_spelling_pattern(&names))),
                    )
                    .description(Some(concat!(
                        "A ", $kind, ". Answers use the canonical upper-case value; requests may use any case and '-' for '_'."
                    )))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The flags a volume definition or volume group may have (any case on input).
pub const VOLUME_FLAGS: &[&str] = &["GROSS_SIZE"];

/// The only diskless type of an auto-select filter: DRBD's (any case on input).
pub const DISKLESS_TYPE: &str = "DRBD_DISKLESS";

/// A regular expression (ECMA and Rust syntax alike) that matches exactly the spellings
/// `FromStr` accepts for `names`: any letter case, `-` or `_` where the name has `_`.
pub fn any_spelling_pattern(names: &[&str]) -> String {
    let alternatives: Vec<String> = names
        .iter()
        .map(|name| {
            name.chars()
                .map(|c| match c {
                    '_' => "[-_]".to_string(),
                    c if c.is_ascii_alphabetic() => {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    }
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

string_enum!(
    /// Where a storage pool takes its space from.
    ProviderKind, "storage provider", {
        /// No local storage: the resource reaches its data over the network.
        Diskless => "DISKLESS",
        Lvm => "LVM",
        LvmThin => "LVM_THIN",
        Zfs => "ZFS",
        ZfsThin => "ZFS_THIN",
        /// Preallocated files in a directory, attached as loop devices.
        File => "FILE",
        /// Sparse files in a directory, attached as loop devices.
        FileThin => "FILE_THIN",
    }
);

impl ProviderKind {
    /// Whether volumes of this kind take their space as they are written.
    pub fn is_thin(self) -> bool {
        matches!(
            self,
            ProviderKind::LvmThin | ProviderKind::ZfsThin | ProviderKind::FileThin
        )
    }

    /// Whether the provider gives a resource a local disk.
    pub fn has_backing_device(self) -> bool {
        self != ProviderKind::Diskless
    }

    /// Whether the provider can take snapshots (LINSTOR's `SupportsSnapshots` trait).
    pub fn supports_snapshots(self) -> bool {
        matches!(
            self,
            ProviderKind::LvmThin
                | ProviderKind::Zfs
                | ProviderKind::ZfsThin
                | ProviderKind::File
                | ProviderKind::FileThin
        )
    }
}

string_enum!(
    /// A layer of a resource's stack, top to bottom.
    LayerKind, "layer", {
        /// Replication by the DRBD 9 kernel module.
        Drbd => "DRBD",
        /// Ferrite's own replication engine, in user space.
        Mirror => "MIRROR",
        /// The local backing volume from a storage provider.
        Storage => "STORAGE",
    }
);

impl LayerKind {
    /// Whether the layer replicates between nodes.
    pub fn is_replication(self) -> bool {
        matches!(self, LayerKind::Drbd | LayerKind::Mirror)
    }
}

string_enum!(
    /// What a node is for.
    NodeType, "node type", {
        Controller => "CONTROLLER",
        Satellite => "SATELLITE",
        /// Both controller and satellite.
        Combined => "COMBINED",
        Auxiliary => "AUXILIARY",
    }
);

impl NodeType {
    /// Whether the controller connects to a satellite on this node.
    pub fn has_satellite(self) -> bool {
        matches!(self, NodeType::Satellite | NodeType::Combined)
    }
}

string_enum!(
    /// How the controller talks to a satellite.
    EncryptionType, "encryption type", {
        Plain => "PLAIN",
        Ssl => "SSL",
    }
);

string_enum!(
    /// The state of the controller's connection to a satellite, as `node list` shows it.
    ConnectionStatus, "connection status", {
        Offline => "OFFLINE",
        Connected => "CONNECTED",
        Online => "ONLINE",
        VersionMismatch => "VERSION_MISMATCH",
        FullSyncFailed => "FULL_SYNC_FAILED",
        AuthenticationError => "AUTHENTICATION_ERROR",
        Unknown => "UNKNOWN",
        HostnameMismatch => "HOSTNAME_MISMATCH",
        OtherController => "OTHER_CONTROLLER",
        NoStltConn => "NO_STLT_CONN",
        MissingExtTools => "MISSING_EXT_TOOLS",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_case_insensitive_output_is_canonical() {
        let t: NodeType = serde_json::from_str("\"combined\"").unwrap();
        assert_eq!(t, NodeType::Combined);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"COMBINED\"");
        assert_eq!(
            "lvm_thin".parse::<ProviderKind>().unwrap(),
            ProviderKind::LvmThin
        );
        assert_eq!(
            "lvm-thin".parse::<ProviderKind>().unwrap(),
            ProviderKind::LvmThin
        );
        assert_eq!(
            "Plain".parse::<EncryptionType>().unwrap(),
            EncryptionType::Plain
        );
    }

    #[test]
    fn unknown_values_list_the_valid_ones() {
        let err = "SPDK".parse::<ProviderKind>().unwrap_err();
        assert!(
            err.to_string().contains("not a valid storage provider"),
            "{err}"
        );
        assert!(err.to_string().contains("FILE_THIN"), "{err}");
        assert!(serde_json::from_str::<LayerKind>("\"LUKS\"").is_err());
    }

    #[test]
    fn the_schema_pattern_admits_exactly_what_the_parser_takes() {
        let names: Vec<&str> = ProviderKind::ALL.iter().map(|v| v.as_str()).collect();
        let pattern = regex::Regex::new(&any_spelling_pattern(&names)).unwrap();
        for spelling in [
            "LVM_THIN",
            "lvm_thin",
            "Lvm-Thin",
            "file",
            " FILE",
            "FILE ",
            "FILETHIN",
            "LVM__THIN",
            "",
            "SPDK",
            "lvm\n",
        ] {
            assert_eq!(
                pattern.is_match(spelling),
                spelling.parse::<ProviderKind>().is_ok(),
                "{spelling:?}"
            );
        }
    }
}
