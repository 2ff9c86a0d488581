//! Sizes as LINSTOR users write them, and as LINSTOR prints them.
//!
//! On the wire every size is in KiB. Users write `2G`, `500MiB`, `10GB`, `2048K`; binary units
//! (`K`, `M`, `G`, `T`, `P` and the `*iB` spellings) are powers of 1024, decimal units (`kB`, `MB`,
//! `GB`, `TB`, `PB`) powers of 1000, `B` is bytes and `S` 512-byte sectors. A size that is not a
//! whole number of KiB is rounded up, so a volume is never smaller than asked for.

/// The largest volume size Ferrite accepts: 1 EiB, in KiB.
pub const MAX_VOLUME_SIZE_KIB: u64 = 1 << 50;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("Size '{0}' is not a number followed by an optional unit")]
    NotANumber(String),
    #[error("Size '{value}' has the unknown unit '{unit}'")]
    UnknownUnit { value: String, unit: String },
    #[error("Size '{0}' is zero")]
    Zero(String),
    #[error("Size '{0}' is larger than the maximum of 1 EiB")]
    TooLarge(String),
}

impl SizeError {
    /// What the user should write instead.
    pub fn correction(&self) -> &'static str {
        match self {
            SizeError::NotANumber(_) | SizeError::UnknownUnit { .. } => {
                "Write a whole number with one of the units B, S, K, KiB, kB, M, MiB, MB, G, GiB, GB, T, TiB, TB, P, PiB, PB (e.g. 2G or 500MiB)."
            }
            SizeError::Zero(_) => "Give a size of at least 1 KiB.",
            SizeError::TooLarge(_) => "Give a size of at most 1 EiB.",
        }
    }
}

/// The unit assumed when a size has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultUnit {
    Bytes,
    KiB,
    GiB,
}

/// Bytes per unit, or `None` for an unknown unit. Unit names are case-insensitive, as in
/// python-linstor.
fn unit_bytes(unit: &str) -> Option<u128> {
    let binary = |power: u32| Some(1u128 << (10 * power));
    let decimal = |power: u32| Some(10u128.pow(3 * power));
    match unit.to_ascii_lowercase().as_str() {
        "b" => Some(1),
        "s" => Some(512),
        "k" | "kib" => binary(1),
        "kb" => decimal(1),
        "m" | "mib" => binary(2),
        "mb" => decimal(2),
        "g" | "gib" => binary(3),
        "gb" => decimal(3),
        "t" | "tib" => binary(4),
        "tb" => decimal(4),
        "p" | "pib" => binary(5),
        "pb" => decimal(5),
        _ => None,
    }
}

/// Parses a size such as `2G` into KiB, rounding up. A bare number is taken in `default_unit`.
pub fn parse_size_kib_with_default(
    value: &str,
    default_unit: DefaultUnit,
) -> Result<u64, SizeError> {
    let trimmed = value.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits_end == 0 {
        return Err(SizeError::NotANumber(value.to_string()));
    }
    let number: u128 = trimmed[..digits_end]
        .parse()
        .map_err(|_| SizeError::TooLarge(value.to_string()))?;
    let unit = trimmed[digits_end..].trim();
    let per_unit = if unit.is_empty() {
        match default_unit {
            DefaultUnit::Bytes => 1,
            DefaultUnit::KiB => 1024,
            DefaultUnit::GiB => 1 << 30,
        }
    } else {
        unit_bytes(unit).ok_or_else(|| SizeError::UnknownUnit {
            value: value.to_string(),
            unit: unit.to_string(),
        })?
    };
    let bytes = number
        .checked_mul(per_unit)
        .ok_or_else(|| SizeError::TooLarge(value.to_string()))?;
    let kib = bytes.div_ceil(1024);
    if kib == 0 {
        return Err(SizeError::Zero(value.to_string()));
    }
    if kib > u128::from(MAX_VOLUME_SIZE_KIB) {
        return Err(SizeError::TooLarge(value.to_string()));
    }
    Ok(kib as u64)
}

/// Parses a volume size as `linstor` does: a bare number is GiB.
pub fn parse_size_kib(value: &str) -> Result<u64, SizeError> {
    parse_size_kib_with_default(value, DefaultUnit::GiB)
}

/// Checks a size in KiB that arrived on the wire.
pub fn check_size_kib(kib: i64) -> Result<u64, SizeError> {
    if kib <= 0 {
        return Err(SizeError::Zero(format!("{kib} KiB")));
    }
    let kib = kib as u64;
    if kib > MAX_VOLUME_SIZE_KIB {
        return Err(SizeError::TooLarge(format!("{kib} KiB")));
    }
    Ok(kib)
}

/// Formats KiB the way the `linstor` client does: `20 GiB`, `1.50 GiB`, `512 KiB`.
pub fn format_kib(size_kib: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut index = 0;
    let mut magnitude: u64 = 1;
    while index + 1 < UNITS.len() && size_kib >= magnitude << 10 {
        magnitude <<= 10;
        index += 1;
    }
    if size_kib.is_multiple_of(magnitude) {
        format!("{} {}", size_kib / magnitude, UNITS[index])
    } else {
        format!("{:.2} {}", size_kib as f64 / magnitude as f64, UNITS[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_as_linstor_reads_them() {
        assert_eq!(parse_size_kib("2G").unwrap(), 2 * 1024 * 1024);
        assert_eq!(
            parse_size_kib("2").unwrap(),
            2 * 1024 * 1024,
            "bare number is GiB"
        );
        assert_eq!(parse_size_kib("2GiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size_kib("2gib").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size_kib("100M").unwrap(), 100 * 1024);
        assert_eq!(
            parse_size_kib("100MB").unwrap(),
            97_657,
            "decimal MB rounds up to KiB"
        );
        assert_eq!(parse_size_kib("4096K").unwrap(), 4096);
        assert_eq!(parse_size_kib("1T").unwrap(), 1 << 30);
        assert_eq!(parse_size_kib("8S").unwrap(), 4);
        assert_eq!(
            parse_size_kib("1B").unwrap(),
            1,
            "one byte rounds up to 1 KiB"
        );
        assert_eq!(parse_size_kib(" 3 G ").unwrap(), 3 * 1024 * 1024);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(parse_size_kib(""), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size_kib("G"), Err(SizeError::NotANumber(_))));
        assert!(matches!(
            parse_size_kib("-1G"),
            Err(SizeError::NotANumber(_))
        ));
        assert!(matches!(
            parse_size_kib("1.5G"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size_kib("2X"),
            Err(SizeError::UnknownUnit { .. })
        ));
        assert!(matches!(parse_size_kib("0"), Err(SizeError::Zero(_))));
        assert!(matches!(
            parse_size_kib("2000P"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(matches!(
            parse_size_kib("99999999999999999999999999999999999999999G"),
            Err(SizeError::TooLarge(_))
        ));
        assert!(check_size_kib(0).is_err());
        assert!(check_size_kib(-5).is_err());
        assert!(check_size_kib(i64::MAX).is_err());
        assert_eq!(check_size_kib(1024).unwrap(), 1024);
    }

    #[test]
    fn formats_like_the_linstor_client() {
        assert_eq!(format_kib(20 * 1024 * 1024), "20 GiB");
        assert_eq!(format_kib(100 * 1024 * 1024), "100 GiB");
        assert_eq!(format_kib(512), "512 KiB");
        assert_eq!(format_kib(1536 * 1024), "1.50 GiB");
        assert_eq!(format_kib(0), "0 KiB");
        assert_eq!(format_kib(1 << 40), "1 PiB");
        assert_eq!(format_kib(1 << 50), "1024 PiB");
    }

    proptest! {
        #[test]
        fn gib_round_trips(n in 1u64..1024) {
            prop_assert_eq!(parse_size_kib(&format!("{n}G")).unwrap(), n << 20);
            prop_assert_eq!(format_kib(n << 20), format!("{n} GiB"));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = parse_size_kib(&s);
        }
    }
}
