//! Running a parsed command against the controller and printing what came back.
//!
//! Each submodule owns one object family: how its commands map to REST calls and how its lists
//! render. This module owns what they share: the [`Ctx`] (client, style, `-m`), printing of
//! answers, property tables, `--show-props` columns and the placement filter of
//! `rg create`/`spawn`, `rd auto-place` and `r create --auto-place`.

pub mod connections;
pub mod controller;
pub mod error_reports;
pub mod key_value_store;
pub mod node;
pub mod physical_storage;
pub mod resource;
pub mod resource_definition;
pub mod resource_group;
pub mod resource_group_size;
pub mod snapshot;
pub mod space_reporting;
pub mod storage_pool;
pub mod wait_sync;

use std::collections::BTreeMap;
use std::io::Write as _;

use ferrite_client::{Answer, Client, ClientError};
use ferrite_types::rest::{AutoSelectFilter, Props, PropsModify};

use crate::args::{PlaceCount, PlacementOpts, PropertyArgs, ProviderList};
use crate::json;
use crate::output::{Color, Exit, Style, exit_for, format_replies};
use crate::table::{Column, Table};

/// The namespace of user (auxiliary) properties.
pub const AUX_NAMESPACE: &str = "Aux/";

/// Why a command did not complete.
#[derive(Debug)]
pub enum Failure {
    /// Talking to the controller failed.
    Client(ClientError),
    /// Something local: bad input found after parsing, or a name that is not there.
    Local { message: String, exit: Exit },
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Client(error)
    }
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Local {
            message: message.into(),
            exit: Exit::Usage,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::Local {
            message: message.into(),
            exit: Exit::NotFound,
        }
    }
}

pub type Outcome = Result<Exit, Failure>;

/// Everything a command needs.
pub struct Ctx {
    pub client: Client,
    pub style: Style,
    pub machine_readable: bool,
    pub warn_as_error: bool,
}

/// Writes to stdout; a closed pipe (`ferrite r l | head`) is not an error worth reporting.
pub fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

impl Ctx {
    /// The style of a table, plain when `--pastable`.
    pub fn table_style(&self, pastable: bool) -> Style {
        if pastable {
            Style {
                utf8: false,
                color: false,
            }
        } else {
            self.style
        }
    }

    /// Prints the answers of one or more mutations: their entries, or with `-m` their JSON
    /// as one list.
    pub fn answers(&self, answers: &[Answer]) -> Exit {
        let replies: Vec<_> = answers.iter().flat_map(|a| a.replies.clone()).collect();
        if self.machine_readable {
            let raw = json::concat_arrays(answers.iter().map(|a| a.raw.as_str()));
            emit(&format!("{}\n", json::pretty(&raw)));
        } else {
            emit(&format_replies(&replies, &self.style));
        }
        exit_for(&replies, self.warn_as_error)
    }

    /// Runs mutations one after the other and prints all their answers; a connection failure
    /// stops the run after printing what was answered so far.
    pub fn run_all<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        call: impl Fn(&Client, T) -> Result<Answer, ClientError>,
    ) -> Outcome {
        let mut answers = Vec::new();
        for item in items {
            match call(&self.client, item) {
                Ok(answer) => answers.push(answer),
                Err(error) => {
                    self.answers(&answers);
                    return Err(error.into());
                }
            }
        }
        Ok(self.answers(&answers))
    }

    pub fn one(&self, answer: Result<Answer, ClientError>) -> Outcome {
        Ok(self.answers(&[answer?]))
    }

    /// `-m` output of a list: the controller's JSON, wrapped in a list as `linstor` does.
    pub fn listing_json(&self, raw: &str) -> Exit {
        emit(&format!("{}\n", json::pretty(&format!("[{raw}]"))));
        Exit::Ok
    }

    /// A property table (`Key`, `Value`, sorted by key), or with `-m`
    /// `[[{"key": K, "value": V}, ...]]`.
    pub fn properties(&self, props: Option<&Props>, pastable: bool) -> Exit {
        if self.machine_readable {
            if let Some(props) = props {
                let entries: Vec<_> = props
                    .iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                    .collect();
                let text = serde_json::to_string(&[entries]).expect("properties serialize");
                emit(&format!("{}\n", json::pretty(&text)));
            } else {
                emit("\n");
            }
            return Exit::Ok;
        }
        let Some(props) = props else {
            emit(&format!(
                "{}\n",
                self.style
                    .paint("No property map found for this entry.", Some(Color::Yellow))
            ));
            return Exit::Ok;
        };
        let mut table = Table::new(vec![Column::new("Key"), Column::new("Value")]);
        for (key, value) in props {
            table.row(vec![key.as_str().into(), value.as_str().into()]);
        }
        emit(&table.render(&self.table_style(pastable)));
        Exit::Ok
    }
}

/// The body of a `set-property`: the key (in `Aux/` with `--aux`) set to the value, or deleted
/// when there is no value.
pub fn property_change(property: &PropertyArgs) -> PropsModify {
    let key = if property.aux {
        format!("{AUX_NAMESPACE}{}", property.key)
    } else {
        property.key.clone()
    };
    match property.value.as_deref().filter(|v| !v.is_empty()) {
        Some(value) => PropsModify {
            override_props: BTreeMap::from([(key, value.to_string())]),
            ..Default::default()
        },
        None => PropsModify {
            delete_props: vec![key],
            ..Default::default()
        },
    }
}

/// `--show-props KEY[=HEADER]`: the property key and its column header.
pub fn show_prop_columns(specs: &[String]) -> Vec<(String, String)> {
    specs
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((key, header)) => (key.to_string(), header.to_string()),
            None => (spec.clone(), spec.clone()),
        })
        .collect()
}

/// Adds the `--show-props` columns to a list of columns.
pub fn with_prop_columns(mut columns: Vec<Column>, props: &[(String, String)]) -> Vec<Column> {
    columns.extend(props.iter().map(|(_, header)| Column::new(header.clone())));
    columns
}

/// The `--show-props` cells of one object.
pub fn prop_cells(object: &Props, props: &[(String, String)]) -> Vec<crate::table::Cell> {
    props
        .iter()
        .map(|(key, _)| object.get(key).cloned().unwrap_or_default().into())
        .collect()
}

/// A list argument as `linstor` passes it on: absent stays absent, `""` (or nothing) means
/// "clear", values get `prefix` unless they already carry it.
fn prepared(list: &Option<Vec<String>>, prefix: &str) -> Option<Vec<String>> {
    let list = list.as_ref()?;
    if list.first().is_none_or(|first| first.is_empty()) {
        return Some(Vec::new());
    }
    Some(
        list.iter()
            .map(|value| {
                if prefix.is_empty() || value.starts_with(prefix) {
                    value.clone()
                } else {
                    format!("{prefix}{value}")
                }
            })
            .collect(),
    )
}

/// The placement filter a command's options describe.
pub fn select_filter(
    place_count: Option<PlaceCount>,
    opts: &PlacementOpts,
    providers: Option<&ProviderList>,
) -> Result<AutoSelectFilter, Failure> {
    let mut filter = AutoSelectFilter::default();
    match place_count {
        Some(PlaceCount::Total(n)) => filter.place_count = Some(n),
        Some(PlaceCount::Additional(n)) if n != 0 => filter.additional_place_count = Some(n),
        Some(PlaceCount::Additional(_)) => {}
        Some(PlaceCount::All) => filter.place_count = Some(-1),
        None => {}
    }
    filter.node_name_list = prepared(&opts.node_list, "");
    filter.storage_pool_list = prepared(&opts.storage_pool, "");
    filter.storage_pool_diskless_list = prepared(&opts.diskless_storage_pool, "");
    filter.not_place_with_rsc = prepared(&opts.do_not_place_with, "");
    filter.not_place_with_rsc_regex = opts.do_not_place_with_regex.clone();
    filter.replicas_on_same = prepared(&opts.replicas_on_same, AUX_NAMESPACE);
    filter.replicas_on_different = prepared(&opts.replicas_on_different, AUX_NAMESPACE);
    if let Some(pairs) = &opts.x_replicas_on_different {
        let mut map = BTreeMap::new();
        if !(pairs.is_empty() || pairs.len() == 1 && pairs[0].is_empty()) {
            if pairs.len() % 2 != 0 {
                return Err(Failure::usage(
                    "--x-replicas-on-different takes pairs of AUX_PROPERTY COUNT, e.g. \
                     '--x-replicas-on-different datacenter 2'.",
                ));
            }
            for pair in pairs.chunks(2) {
                let count: i32 = pair[1].parse().map_err(|_| {
                    Failure::usage(format!(
                        "--x-replicas-on-different: '{}' is not a replica count for '{}'.",
                        pair[1], pair[0]
                    ))
                })?;
                let key = if pair[0].starts_with(AUX_NAMESPACE) {
                    pair[0].clone()
                } else {
                    format!("{AUX_NAMESPACE}{}", pair[0])
                };
                map.insert(key, count);
            }
        }
        filter.x_replicas_on_different_map = Some(map);
    }
    filter.diskless_on_remaining = diskless_on_remaining(opts);
    filter.layer_stack = opts
        .layer_list
        .as_ref()
        .map(|layers| layers.0.iter().map(|l| l.to_string()).collect());
    filter.provider_list =
        providers.map(|providers| providers.0.iter().map(|p| p.to_string()).collect());
    Ok(filter)
}

/// `--diskless-on-remaining [false]`: absent, on, or explicitly off.
pub fn diskless_on_remaining(opts: &PlacementOpts) -> Option<bool> {
    opts.diskless_on_remaining
        .as_ref()
        .map(|value| !value.eq_ignore_ascii_case("false"))
}

/// A Python-style list (`['a', 'b']`), as `linstor` prints select filters.
pub fn python_list<T: std::fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// `True`/`False`, as Python prints booleans.
pub fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Milliseconds since the epoch as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_datetime(millis: i64) -> String {
    use chrono::TimeZone as _;
    match chrono::Local.timestamp_millis_opt(millis) {
        chrono::LocalResult::Single(time) | chrono::LocalResult::Ambiguous(time, _) => {
            time.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use ferrite_types::{LayerKind, ProviderKind};

    use super::*;
    use crate::args::LayerList;

    #[test]
    fn set_and_delete_properties() {
        let set = property_change(&PropertyArgs {
            aux: true,
            key: "rack".into(),
            value: Some("r1".into()),
        });
        assert_eq!(
            set.override_props.get("Aux/rack").map(String::as_str),
            Some("r1")
        );
        let delete = property_change(&PropertyArgs {
            aux: false,
            key: "DrbdOptions/Net/protocol".into(),
            value: Some(String::new()),
        });
        assert_eq!(delete.delete_props, vec!["DrbdOptions/Net/protocol"]);
        assert!(delete.override_props.is_empty());
    }

    #[test]
    fn placement_options_become_a_select_filter() {
        let opts = PlacementOpts {
            storage_pool: Some(vec!["pool_ssd".into()]),
            diskless_storage_pool: Some(vec![String::new()]),
            replicas_on_same: Some(vec!["rack".into(), "Aux/room".into()]),
            x_replicas_on_different: Some(vec!["dc".into(), "2".into()]),
            diskless_on_remaining: Some("true".into()),
            layer_list: Some(LayerList(vec![LayerKind::Mirror, LayerKind::Storage])),
            node_list: Some(vec!["alpha".into(), "bravo".into()]),
            ..Default::default()
        };
        let providers = ProviderList(vec![ProviderKind::FileThin]);
        let filter = select_filter(Some(PlaceCount::Total(2)), &opts, Some(&providers)).unwrap();
        let json = serde_json::to_value(&filter).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "place_count": 2,
                "node_name_list": ["alpha", "bravo"],
                "storage_pool_list": ["pool_ssd"],
                "storage_pool_diskless_list": [],
                "replicas_on_same": ["Aux/rack", "Aux/room"],
                "x_replicas_on_different_map": {"Aux/dc": 2},
                "diskless_on_remaining": true,
                "layer_stack": ["MIRROR", "STORAGE"],
                "provider_list": ["FILE_THIN"],
            })
        );
        let empty = select_filter(None, &PlacementOpts::default(), None).unwrap();
        assert_eq!(serde_json::to_value(&empty).unwrap(), serde_json::json!({}));
        let more = select_filter(
            Some(PlaceCount::Additional(1)),
            &PlacementOpts::default(),
            None,
        )
        .unwrap();
        assert_eq!(more.additional_place_count, Some(1));
        let odd = PlacementOpts {
            x_replicas_on_different: Some(vec!["dc".into()]),
            ..Default::default()
        };
        assert!(select_filter(None, &odd, None).is_err());
        let off = PlacementOpts {
            diskless_on_remaining: Some("False".into()),
            ..Default::default()
        };
        assert_eq!(diskless_on_remaining(&off), Some(false));
    }

    #[test]
    fn show_props_headers() {
        assert_eq!(
            show_prop_columns(&["Aux/rack=Rack".into(), "Aux/dc".into()]),
            vec![
                ("Aux/rack".to_string(), "Rack".to_string()),
                ("Aux/dc".to_string(), "Aux/dc".to_string())
            ]
        );
    }

    #[test]
    fn python_spellings() {
        assert_eq!(python_list(&["Aux/a", "b"]), "['Aux/a', 'b']");
        assert_eq!(python_list::<String>(&[]), "[]");
        assert_eq!(python_bool(true), "True");
    }
}
