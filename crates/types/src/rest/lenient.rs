//! Deserializers for fields that clients send in more than one form.
//!
//! python-linstor passes some command-line values through unconverted, so `place_count`
//! arrives as `"2"` as often as `2`.

use serde::{Deserialize, Deserializer};

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
        Some(IntOrString::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not a whole number")))?,
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
        Some(BoolOrString::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(Some(true)),
            "false" | "no" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!(
                "'{s}' is not true or false"
            ))),
        },
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
    }
}
