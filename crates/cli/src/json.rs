//! Machine-readable output (`-m`): the controller's JSON passed through untouched, laid out the
//! way the `linstor` client prints it (Python's `json.dumps(..., indent=2)`).
//!
//! The text is re-indented token by token, never parsed into maps, so key order, number spelling
//! and string escapes stay exactly as the controller sent them.

/// A JSON token: structure, or a scalar kept verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open(char),
    Close(char),
    Comma,
    Colon,
    Scalar(&'a str),
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' | b'[' => {
                out.push(Token::Open(bytes[i] as char));
                i += 1;
            }
            b'}' | b']' => {
                out.push(Token::Close(bytes[i] as char));
                i += 1;
            }
            b',' => {
                out.push(Token::Comma);
                i += 1;
            }
            b':' => {
                out.push(Token::Colon);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                out.push(Token::Scalar(&text[start..i]));
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(
                        bytes[i],
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'{'
                            | b'['
                            | b'}'
                            | b']'
                            | b','
                            | b':'
                            | b'"'
                    )
                {
                    i += 1;
                }
                out.push(Token::Scalar(&text[start..i]));
            }
        }
    }
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// `text` laid out with two-space indentation; empty arrays and objects stay `[]` and `{}`.
pub fn pretty(text: &str) -> String {
    let tokens = tokens(text);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut index = 0;
    while index < tokens.len() {
        match tokens[index] {
            Token::Open(open) => {
                if let Some(Token::Close(close)) = tokens.get(index + 1) {
                    out.push(open);
                    out.push(*close);
                    index += 2;
                    continue;
                }
                out.push(open);
                depth += 1;
                newline(&mut out, depth);
            }
            Token::Close(close) => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(close);
            }
            Token::Comma => {
                out.push(',');
                newline(&mut out, depth);
            }
            Token::Colon => out.push_str(": "),
            Token::Scalar(scalar) => out.push_str(scalar),
        }
        index += 1;
    }
    out
}

/// `text` on one line with `, ` and `: ` separators (Python's `json.dumps` default).
pub fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for token in tokens(text) {
        match token {
            Token::Open(c) | Token::Close(c) => out.push(c),
            Token::Comma => out.push_str(", "),
            Token::Colon => out.push_str(": "),
            Token::Scalar(scalar) => out.push_str(scalar),
        }
    }
    out
}

/// One JSON array holding every element of the given JSON arrays, in order (the answers of
/// several calls printed as one list, as the `linstor` client does).
pub fn concat_arrays<'a>(arrays: impl IntoIterator<Item = &'a str>) -> String {
    let inner: Vec<&str> = arrays
        .into_iter()
        .filter_map(|array| {
            let trimmed = array.trim();
            trimmed
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .map(str::trim)
                .filter(|t| !t.is_empty())
        })
        .collect();
    format!("[{}]", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_like_python() {
        let raw = r#"[{"name":"alpha","flags":[],"props":{},"net_interfaces":[{"satellite_port":3366,"is_active":true}],"x":null,"f":1.5e3}]"#;
        let expected = r#"[
  {
    "name": "alpha",
    "flags": [],
    "props": {},
    "net_interfaces": [
      {
        "satellite_port": 3366,
        "is_active": true
      }
    ],
    "x": null,
    "f": 1.5e3
  }
]"#;
        assert_eq!(pretty(raw), expected);
    }

    #[test]
    fn key_order_and_escapes_are_kept() {
        let raw = "{ \"z\" : \"a \\\"quoted\\\" [x], {y}: z\", \"a\":\t\"é\" }";
        assert_eq!(
            pretty(raw),
            "{\n  \"z\": \"a \\\"quoted\\\" [x], {y}: z\",\n  \"a\": \"é\"\n}"
        );
        assert_eq!(
            compact(raw),
            "{\"z\": \"a \\\"quoted\\\" [x], {y}: z\", \"a\": \"é\"}"
        );
    }

    #[test]
    fn output_is_valid_json_equal_to_the_input() {
        let raw = r#"[[{"a":[1,2,{"b":[]}],"c":{"d":{}}}],[]]"#;
        let original: serde_json::Value = serde_json::from_str(raw).unwrap();
        let again: serde_json::Value = serde_json::from_str(&pretty(raw)).unwrap();
        assert_eq!(original, again);
        let again: serde_json::Value = serde_json::from_str(&compact(raw)).unwrap();
        assert_eq!(original, again);
    }

    #[test]
    fn arrays_concatenate() {
        assert_eq!(
            concat_arrays(["[1, 2]", " [] ", "[{\"a\":3}]"]),
            "[1, 2,{\"a\":3}]"
        );
        assert_eq!(concat_arrays(Vec::<&str>::new()), "[]");
        assert_eq!(pretty(&concat_arrays(["[]"])), "[]");
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in ["", "\"unterminated", "}}]]", "[,:", "\\"] {
            let _ = pretty(text);
            let _ = compact(text);
        }
    }
}
