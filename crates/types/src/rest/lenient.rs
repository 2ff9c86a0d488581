//! Deserializers for fields that clients send in more than one form.
//!
//! python-linstor passes some command-line values through unconverted, so `place_count`
//! arrives as `"2"` as often as `2`. The string forms are exact: an integer is an optional `-`
//! and decimal digits, a boolean `true`, `false`, `yes` or `no` in any case; nothing else, no
//! blanks. [`INTEGER_STRING_PATTERN`] and [`BOOLEAN_STRING_PATTERN`] are those forms as the
//! OpenAPI document publishes them.

use serde::{Deserialize, Deserializer};

/// An integer given as a string.
pub const INTEGER_STRING_PATTERN: &str = "^-?[0-9]+$";

/// A boolean given as a string.
pub const BOOLEAN_STRING_PATTERN: &str =
    "^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo])$";

/// Reads an integer in the form [`INTEGER_STRING_PATTERN`] describes.
fn parse_integer(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a whole number"));
    }
    text.parse().map_err(|_| format!("{text} is out of range"))
}

/// Reads a boolean in the form [`BOOLEAN_STRING_PATTERN`] describes.
pub fn parse_boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    String(String),
}

/// An optional 32-bit integer given as a JSON number, a numeric string or null.
pub fn opt_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    let value: Option<IntOrString> = Option::deserialize(deserializer)?;
    let wide = match value {
        None => return Ok(None),
        Some(IntOrString::Int(i)) => i,
        Some(IntOrString::String(s)) => parse_integer(&s).map_err(serde::de::Error::custom)?,
    };
    i32::try_from(wide)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{wide} is out of range")))
}

/// An optional boolean given as a JSON bool, `"true"`/`"false"` in any case, or null.
pub fn opt_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        String(String),
    }
    match Option::<BoolOrString>::deserialize(deserializer)? {
        None => Ok(None),
        Some(BoolOrString::Bool(b)) => Ok(Some(b)),
        Some(BoolOrString::String(s)) => parse_boolean(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not true or false"))),
    }
}

/// A nested struct that must be a JSON object. serde reads a struct from an array of its
/// fields in order too, which no client means: `"select_filter": [null, null]` would be an
/// empty filter.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    if !value.is_object() {
        return Err(serde::de::Error::custom(format!(
            "expected a JSON object, found {value}"
        )));
    }
    T::deserialize(value).map_err(serde::de::Error::custom)
}

/// An optional nested struct: a JSON object or null.
pub fn opt_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        value => object(value).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A list of nested structs, each a JSON object.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Vec::<serde_json::Value>::deserialize(deserializer)?
        .into_iter()
        .map(|item| object(item).map_err(serde::de::Error::custom))
        .collect()
}

/// An optional list of nested structs: null, or a list of JSON objects.
pub fn opt_objects<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        value => objects(value).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "super::opt_i32")]
        n: Option<i32>,
        #[serde(default, deserialize_with = "super::opt_bool")]
        b: Option<bool>,
    }

    #[test]
    fn accepts_numbers_strings_and_null() {
        let p: Probe = serde_json::from_str(r#"{"n": "2", "b": "True"}"#).unwrap();
        assert_eq!((p.n, p.b), (Some(2), Some(true)));
        let p: Probe = serde_json::from_str(r#"{"n": 3, "b": false}"#).unwrap();
        assert_eq!((p.n, p.b), (Some(3), Some(false)));
        let p: Probe = serde_json::from_str(r#"{"n": null, "b": null}"#).unwrap();
        assert_eq!((p.n, p.b), (None, None));
        let p: Probe = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!((p.n, p.b), (None, None));
    }

    #[test]
    fn refuses_garbage() {
        assert!(serde_json::from_str::<Probe>(r#"{"n": "two"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"n": 99999999999}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"b": "maybe"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"n": " 2"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"n": "+2"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"n": "-"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"n": "2.0"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"b": "1"}"#).is_err());
        let p: Probe = serde_json::from_str(r#"{"n": "-7", "b": "NO"}"#).unwrap();
        assert_eq!((p.n, p.b), (Some(-7), Some(false)));
    }

    #[test]
    fn nested_structs_are_objects() {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct Inner {
            a: Option<i32>,
        }
        #[derive(Debug, Deserialize)]
        struct Outer {
            #[serde(default, deserialize_with = "super::object")]
            one: Inner,
            #[serde(default, deserialize_with = "super::opt_object")]
            maybe: Option<Inner>,
            #[serde(default, deserialize_with = "super::objects")]
            many: Vec<Inner>,
        }
        let ok: Outer =
            serde_json::from_str(r#"{"one": {"a": 1}, "maybe": null, "many": [{}]}"#).unwrap();
        assert_eq!(
            (ok.one.a, ok.maybe.is_none(), ok.many.len()),
            (Some(1), true, 1)
        );
        for bad in [
            r#"{"one": [1]}"#,
            r#"{"one": []}"#,
            r#"{"maybe": [null]}"#,
            r#"{"many": [[]]}"#,
        ] {
            assert!(serde_json::from_str::<Outer>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_describe_the_string_forms() {
        let integer = regex::Regex::new(super::INTEGER_STRING_PATTERN).unwrap();
        for text in ["0", "-12", "007", "", "-", " 1", "1 ", "+1", "1e3", "١"] {
            assert_eq!(
                integer.is_match(text),
                super::parse_integer(text).is_ok(),
                "{text:?}"
            );
        }
        let boolean = regex::Regex::new(super::BOOLEAN_STRING_PATTERN).unwrap();
        for text in [
            "true", "FALSE", "Yes", "no", "", "1", "t", "truee", " true", "null",
        ] {
            assert_eq!(
                boolean.is_match(text),
                super::parse_boolean(text).is_some(),
                "{text:?}"
            );
        }
    }
}
