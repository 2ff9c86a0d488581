//! Generates `table.rs` from `drbdsetup xml-help <command>`, and checks that the committed
//! table is what the installed drbd-utils describes. `FERRITE_BLESS=1` rewrites it.

use std::fmt::Write;

use super::Section;

/// The drbdsetup command whose options make each section.
const COMMANDS: [(Section, &str); 4] = [
    (Section::Resource, "resource-options"),
    (Section::Net, "net-options"),
    (Section::Disk, "disk-options"),
    (Section::PeerDevice, "peer-device-options"),
];

fn tag<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    line.trim()
        .strip_prefix(open.as_str())?
        .strip_suffix(close.as_str())
}

fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

/// The table entries of one section from drbdsetup's XML.
fn entries(section: Section, xml: &str) -> String {
    let mut out = String::new();
    let mut current: Option<(String, String)> = None;
    let (mut min, mut max, mut unit) = (None, None, '1');
    let mut words: Vec<String> = Vec::new();
    for line in xml.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("<option ") {
            current = Some((
                attribute(trimmed, "name").expect("option name").to_string(),
                attribute(trimmed, "type").expect("option type").to_string(),
            ));
            (min, max, unit) = (None, None, '1');
            words.clear();
        } else if let Some(v) = tag(trimmed, "min") {
            min = Some(v.to_string());
        } else if let Some(v) = tag(trimmed, "max") {
            max = Some(v.to_string());
        } else if let Some(v) = tag(trimmed, "unit_prefix") {
            unit = v.chars().next().unwrap_or('1');
        } else if let Some(v) = tag(trimmed, "handler").or_else(|| tag(trimmed, "symbol")) {
            words.push(format!("{v:?}"));
        } else if trimmed == "</option>" {
            let (name, kind) = current.take().expect("an open option");
            let kind = match kind.as_str() {
                "flag" => continue,
                "boolean" => "Kind::Boolean".to_string(),
                "string" => "Kind::String".to_string(),
                "handler" => format!("Kind::Enum(&[{}])", words.join(", ")),
                "numeric" => format!(
                    "Kind::Numeric {{ min: {}, max: {}, unit: {unit:?} }}",
                    min.as_deref().expect("min"),
                    max.as_deref().expect("max")
                ),
                "numeric-or-symbol" => format!(
                    "Kind::NumericOrSymbol {{ min: {}, max: {}, symbols: &[{}] }}",
                    min.as_deref().expect("min"),
                    max.as_deref().expect("max"),
                    words.join(", ")
                ),
                other => panic!("drbdsetup describes an option type '{other}' not known here"),
            };
            writeln!(
                out,
                "    OptionSpec {{ section: Section::{section:?}, name: {name:?}, kind: {kind} }},"
            )
            .unwrap();
        }
    }
    out
}

fn generate(version: &str, xml_of: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    out.push_str(
        "//! DRBD's options and their values, generated from `drbdsetup xml-help` of drbd-utils\n",
    );
    writeln!(
        out,
        "//! {version} by `options::generate` (`FERRITE_BLESS=1`); do not edit."
    )
    .unwrap();
    out.push_str("\nuse super::{Kind, OptionSpec, Section};\n\n#[rustfmt::skip]\npub static OPTIONS: &[OptionSpec] = &[\n");
    for (section, command) in COMMANDS {
        out.push_str(&entries(section, &xml_of(command)));
    }
    out.push_str("];\n");
    out
}

fn drbdsetup(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("drbdsetup")
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn the_committed_table_is_what_drbdsetup_describes() {
    let Some(version) = std::process::Command::new("drbdadm")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    else {
        eprintln!("skipped: drbd-utils is not installed (scripts/setup.sh installs it)");
        return;
    };
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("DRBDADM_VERSION="))
        .unwrap_or("unknown")
        .to_string();
    let generated = generate(&version, |command| {
        drbdsetup(&["xml-help", command]).expect("drbdsetup xml-help")
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/options/table.rs");
    if std::env::var_os("FERRITE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    // Another drbd-utils release may describe more options; the committed one is the reference.
    if !committed.contains(&format!("drbd-utils\n//! {version} ")) {
        eprintln!("skipped: drbd-utils {version} is not the release the table was made from");
        return;
    }
    assert_eq!(
        committed, generated,
        "src/options/table.rs differs from drbdsetup xml-help; run the test with FERRITE_BLESS=1"
    );
}
