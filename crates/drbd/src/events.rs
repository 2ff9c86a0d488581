//! `drbdsetup events2 --timestamps --statistics` lines, and the state they add up to.
//!
//! Each line is one event: an optional timestamp, an action (`exists`, `create`, `change`,
//! `destroy`; `call`/`response` for helpers), an object (`resource`, `connection`, `device`,
//! `peer-device`, `path`, `helper`) and `key:value` fields. `exists -` ends the initial dump.
//! A `change` names only what changed; a value may be written `old->new`.
//!
//! ```text
//! 2026-11-30T02:10:00.000000+00:00 exists resource name:web role:Secondary suspended:no ...
//! 2026-11-30T02:10:00.000000+00:00 change peer-device name:web peer-node-id:1 conn-name:node2
//!                                   volume:0 replication:SyncTarget done:43.20 out-of-sync:61440
//! ```
//!
//! [`State`] applies events in order and keeps, per resource, its role, each device's disk state
//! and quorum, each connection's state and each peer device's replication state, sync progress
//! and out-of-sync amount, and whether a split brain was reported on a connection (until it
//! connects again). Words the kernel uses are typed; an unknown one refuses the line with the
//! word, so a newer DRBD is noticed rather than misread.
//!
//! [`Stream`] wraps the state of one followed stream: it is current only once the stream's
//! initial dump ended, and forgotten when the stream ends, so a restarted stream rebuilds it.
//! Helpers' `call`/`response` lines change nothing but a split brain's mark; a line that is
//! not understood changes nothing at all.
//!
//! Owns parsing and the state; not following the stream (the satellite's supervisor does).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Why a line is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("events2 line '{line}': {why}")]
    Malformed { line: String, why: String },
}

macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(word: &str) -> Result<Self, String> {
                match word {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!("'{other}' is no {}", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words!(
    /// What happened to the object.
    Action {
        Exists = "exists",
        Create = "create",
        Change = "change",
        Destroy = "destroy",
        Call = "call",
        Response = "response",
    }
);

words!(
    /// What the event is about.
    Object {
        Resource = "resource",
        Connection = "connection",
        Device = "device",
        PeerDevice = "peer-device",
        Path = "path",
        Helper = "helper",
    }
);

words!(
    /// A resource's or a peer's role.
    Role {
        Primary = "Primary",
        Secondary = "Secondary",
        Unknown = "Unknown",
    }
);

words!(
    /// A device's disk state (local, or a peer's as seen from here).
    DiskState {
        Diskless = "Diskless",
        Attaching = "Attaching",
        Detaching = "Detaching",
        Failed = "Failed",
        Negotiating = "Negotiating",
        Inconsistent = "Inconsistent",
        Outdated = "Outdated",
        DUnknown = "DUnknown",
        Consistent = "Consistent",
        UpToDate = "UpToDate",
    }
);

words!(
    /// A connection's state.
    ConnectionState {
        StandAlone = "StandAlone",
        Disconnecting = "Disconnecting",
        Unconnected = "Unconnected",
        Timeout = "Timeout",
        BrokenPipe = "BrokenPipe",
        NetworkFailure = "NetworkFailure",
        ProtocolError = "ProtocolError",
        TearDown = "TearDown",
        Connecting = "Connecting",
        Connected = "Connected",
    }
);

words!(
    /// A peer device's replication state.
    ReplicationState {
        Off = "Off",
        Established = "Established",
        StartingSyncS = "StartingSyncS",
        StartingSyncT = "StartingSyncT",
        WFBitMapS = "WFBitMapS",
        WFBitMapT = "WFBitMapT",
        WFSyncUUID = "WFSyncUUID",
        SyncSource = "SyncSource",
        SyncTarget = "SyncTarget",
        VerifyS = "VerifyS",
        VerifyT = "VerifyT",
        PausedSyncS = "PausedSyncS",
        PausedSyncT = "PausedSyncT",
        Ahead = "Ahead",
        Behind = "Behind",
    }
);

impl ReplicationState {
    /// A resync (or verify) is running or paused.
    pub fn is_syncing(self) -> bool {
        matches!(
            self,
            ReplicationState::SyncSource
                | ReplicationState::SyncTarget
                | ReplicationState::PausedSyncS
                | ReplicationState::PausedSyncT
                | ReplicationState::VerifyS
                | ReplicationState::VerifyT
        )
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Event(Event),
    /// `exists -`: the initial state has been listed; what follows are changes.
    InitialStateDone,
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// As printed with `--timestamps` (ISO 8601 with microseconds and offset).
    pub timestamp: Option<String>,
    pub action: Action,
    pub object: Object,
    /// `key:value` fields in order; an `old->new` value is kept as `new`.
    pub fields: Vec<(String, String)>,
}

impl Event {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn parsed<T: FromStr<Err = String>>(&self, key: &str) -> Result<Option<T>, String> {
        self.field(key).map(T::from_str).transpose()
    }

    fn number<T: FromStr>(&self, key: &str) -> Result<Option<T>, String> {
        self.field(key)
            .map(|v| v.parse().map_err(|_| format!("{key}:{v} is not a number")))
            .transpose()
    }

    fn yes_no(&self, key: &str) -> Result<Option<bool>, String> {
        self.field(key)
            .map(|v| match v {
                "yes" => Ok(true),
                "no" => Ok(false),
                other => Err(format!("{key}:{other} is neither yes nor no")),
            })
            .transpose()
    }

    fn required(&self, key: &str) -> Result<&str, String> {
        self.field(key)
            .ok_or_else(|| format!("the {} event has no {key}", self.object))
    }
}

fn looks_like_timestamp(word: &str) -> bool {
    word.len() >= 19
        && word.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && word.as_bytes()[4] == b'-'
        && word.contains('T')
}

/// Parses one line of `drbdsetup events2` output.
pub fn parse_line(line: &str) -> Result<Line, ParseError> {
    let malformed = |why: String| ParseError::Malformed {
        line: line.to_string(),
        why,
    };
    let mut words = line.split_whitespace().peekable();
    let timestamp = match words.peek() {
        Some(w) if looks_like_timestamp(w) => words.next().map(str::to_string),
        _ => None,
    };
    let action: Action = words
        .next()
        .ok_or_else(|| malformed("empty".to_string()))?
        .parse()
        .map_err(malformed)?;
    let object_word = words
        .next()
        .ok_or_else(|| malformed("no object".to_string()))?;
    if action == Action::Exists && object_word == "-" {
        return Ok(Line::InitialStateDone);
    }
    let object: Object = object_word.parse().map_err(malformed)?;
    let mut fields = Vec::new();
    for word in words {
        let (key, value) = word
            .split_once(':')
            .ok_or_else(|| malformed(format!("'{word}' is no key:value field")))?;
        let value = value.rsplit_once("->").map_or(value, |(_, new)| new);
        fields.push((key.to_string(), value.to_string()));
    }
    Ok(Line::Event(Event {
        timestamp,
        action,
        object,
        fields,
    }))
}

/// A local volume.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceState {
    pub minor: Option<u32>,
    pub disk: Option<DiskState>,
    /// A diskless client (not a tiebreaker).
    pub client: Option<bool>,
    pub quorum: Option<bool>,
    /// Opened by someone (mounted, used by a VM).
    pub open: Option<bool>,
    /// Statistics: the usable size in KiB.
    pub size_kib: Option<u64>,
}

/// A volume as replicated to one peer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerDeviceState {
    pub replication: Option<ReplicationState>,
    pub peer_disk: Option<DiskState>,
    pub peer_client: Option<bool>,
    pub resync_suspended: Option<String>,
    /// Percent of the running resync done; kept only while it syncs.
    pub done_percent: Option<f64>,
    /// Statistics: what still differs from the peer, in KiB.
    pub out_of_sync_kib: Option<u64>,
}

/// The connection to one peer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerConnection {
    pub peer_name: Option<String>,
    pub connection: Option<ConnectionState>,
    pub role: Option<Role>,
    /// Whether some path to the peer is established.
    pub path_established: Option<bool>,
    /// A split brain was reported on this connection and it has not connected since.
    pub split_brain: bool,
    pub peer_devices: BTreeMap<u16, PeerDeviceState>,
}

/// The state of one resource, as the events say it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceState {
    pub role: Option<Role>,
    pub suspended: Option<String>,
    pub may_promote: Option<bool>,
    pub promotion_score: Option<u64>,
    pub devices: BTreeMap<u16, DeviceState>,
    /// By peer node-id.
    pub connections: BTreeMap<u8, PeerConnection>,
}

impl ResourceState {
    /// Whether every local device has quorum (a resource without devices has none).
    pub fn quorum(&self) -> bool {
        !self.devices.is_empty() && self.devices.values().all(|d| d.quorum != Some(false))
    }

    /// Whether a device is open (the resource is in use here).
    pub fn in_use(&self) -> bool {
        self.role == Some(Role::Primary) || self.devices.values().any(|d| d.open == Some(true))
    }
}

/// The state of every resource the stream reported.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub resources: BTreeMap<String, ResourceState>,
    /// The initial dump is complete (`exists -` seen).
    pub initial_done: bool,
}

impl State {
    /// Applies one parsed line.
    pub fn apply_line(&mut self, line: Line) -> Result<(), String> {
        match line {
            Line::InitialStateDone => {
                self.initial_done = true;
                Ok(())
            }
            Line::Event(event) => self.apply(&event),
        }
    }

    /// Parses and applies one line of output.
    pub fn apply_text(&mut self, line: &str) -> Result<(), ParseError> {
        let parsed = parse_line(line)?;
        self.apply_line(parsed)
            .map_err(|why| ParseError::Malformed {
                line: line.to_string(),
                why,
            })
    }

    /// Applies one event.
    pub fn apply(&mut self, event: &Event) -> Result<(), String> {
        let name = event.required("name")?.to_string();
        if event.action == Action::Destroy {
            return self.destroy(event, &name);
        }
        // Helpers' calls and answers say nothing of the state, except that a split brain was
        // found on a connection (which shows otherwise only as StandAlone).
        if event.action == Action::Response
            || (event.action == Action::Call
                && !matches!(
                    event.field("helper"),
                    Some("split-brain" | "initial-split-brain")
                ))
        {
            return Ok(());
        }
        // Applied to a copy, kept only when the whole event was understood: a refused line
        // changes nothing.
        let mut copy = self.resources.get(&name).cloned().unwrap_or_default();
        Self::apply_to(&mut copy, event)?;
        self.resources.insert(name, copy);
        Ok(())
    }

    fn apply_to(resource: &mut ResourceState, event: &Event) -> Result<(), String> {
        match event.object {
            Object::Resource => {
                if let Some(role) = event.parsed("role")? {
                    resource.role = Some(role);
                }
                if let Some(v) = event.field("suspended") {
                    resource.suspended = Some(v.to_string());
                }
                if let Some(v) = event.yes_no("may_promote")? {
                    resource.may_promote = Some(v);
                }
                if let Some(v) = event.number("promotion_score")? {
                    resource.promotion_score = Some(v);
                }
            }
            Object::Device => {
                let volume: u16 = event
                    .number("volume")?
                    .ok_or("the device event has no volume")?;
                let device = resource.devices.entry(volume).or_default();
                if let Some(v) = event.number("minor")? {
                    device.minor = Some(v);
                }
                if let Some(v) = event.parsed("disk")? {
                    device.disk = Some(v);
                }
                if let Some(v) = event.yes_no("client")? {
                    device.client = Some(v);
                }
                if let Some(v) = event.yes_no("quorum")? {
                    device.quorum = Some(v);
                }
                match event.field("open") {
                    Some("yes") => device.open = Some(true),
                    Some("no") => device.open = Some(false),
                    _ => {}
                }
                if let Some(v) = event.number("size")? {
                    device.size_kib = Some(v);
                }
            }
            Object::Connection | Object::Path => {
                let peer: u8 = event
                    .number("peer-node-id")?
                    .ok_or("the connection event has no peer-node-id")?;
                let connection = resource.connections.entry(peer).or_default();
                if let Some(v) = event.field("conn-name") {
                    connection.peer_name = Some(v.to_string());
                }
                if event.object == Object::Path {
                    if let Some(v) = event.yes_no("established")? {
                        connection.path_established = Some(v);
                    }
                    return Ok(());
                }
                if let Some(state) = event.parsed::<ConnectionState>("connection")? {
                    connection.connection = Some(state);
                    if state == ConnectionState::Connected {
                        connection.split_brain = false;
                    }
                }
                if let Some(v) = event.parsed("role")? {
                    connection.role = Some(v);
                }
            }
            Object::PeerDevice => {
                let peer: u8 = event
                    .number("peer-node-id")?
                    .ok_or("the peer-device event has no peer-node-id")?;
                let volume: u16 = event
                    .number("volume")?
                    .ok_or("the peer-device event has no volume")?;
                let connection = resource.connections.entry(peer).or_default();
                if let Some(v) = event.field("conn-name") {
                    connection.peer_name = Some(v.to_string());
                }
                let device = connection.peer_devices.entry(volume).or_default();
                if let Some(v) = event.parsed::<ReplicationState>("replication")? {
                    device.replication = Some(v);
                    if !v.is_syncing() {
                        device.done_percent = None;
                    }
                }
                if let Some(v) = event.parsed("peer-disk")? {
                    device.peer_disk = Some(v);
                }
                if let Some(v) = event.yes_no("peer-client")? {
                    device.peer_client = Some(v);
                }
                if let Some(v) = event.field("resync-suspended") {
                    device.resync_suspended = Some(v.to_string());
                }
                if let Some(v) = event.number::<f64>("done")? {
                    device.done_percent = Some(v);
                }
                if let Some(v) = event.number("out-of-sync")? {
                    device.out_of_sync_kib = Some(v);
                }
            }
            Object::Helper => {
                let helper = event.required("helper")?;
                if matches!(helper, "split-brain" | "initial-split-brain")
                    && let Some(peer) = event.number::<u8>("peer-node-id")?
                {
                    let connection = resource.connections.entry(peer).or_default();
                    if let Some(v) = event.field("conn-name") {
                        connection.peer_name = Some(v.to_string());
                    }
                    connection.split_brain = true;
                }
            }
        }
        Ok(())
    }

    fn destroy(&mut self, event: &Event, name: &str) -> Result<(), String> {
        match event.object {
            Object::Resource => {
                self.resources.remove(name);
            }
            Object::Device => {
                let volume: u16 = event.number("volume")?.ok_or("no volume")?;
                if let Some(r) = self.resources.get_mut(name) {
                    r.devices.remove(&volume);
                }
            }
            Object::Connection => {
                let peer: u8 = event.number("peer-node-id")?.ok_or("no peer-node-id")?;
                if let Some(r) = self.resources.get_mut(name) {
                    r.connections.remove(&peer);
                }
            }
            Object::PeerDevice => {
                let peer: u8 = event.number("peer-node-id")?.ok_or("no peer-node-id")?;
                let volume: u16 = event.number("volume")?.ok_or("no volume")?;
                if let Some(c) = self
                    .resources
                    .get_mut(name)
                    .and_then(|r| r.connections.get_mut(&peer))
                {
                    c.peer_devices.remove(&volume);
                }
            }
            Object::Path | Object::Helper => {}
        }
        Ok(())
    }
}

/// Where a followed `drbdsetup events2` stream is. The state is current only while
/// [`Phase::Live`]: until the initial dump ended it is partial, and once the stream died it
/// says what was, not what is.
///
/// ```text
///            started                exists -
///   Down ─────────────▶ Dumping ─────────────▶ Live
///    ▲                     │                     │
///    └──── ended(why) ─────┴─────────────────────┘
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No stream runs (yet, or any more), with the reason.
    Down(String),
    /// A stream started and lists the initial state.
    Dumping,
    /// The initial state was listed; every line since is a change.
    Live,
}

/// The one owner of the DRBD state of this node: folds a followed `drbdsetup events2` stream,
/// start to end, into [`State`], and forgets it when the stream ends, so that a restarted
/// stream rebuilds it from its own `exists` dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    state: State,
    phase: Phase,
}

/// What a stream has not said anything yet.
pub const NOT_FOLLOWED: &str = "drbdsetup events2 is not followed yet";

impl Default for Stream {
    fn default() -> Self {
        Stream {
            state: State::default(),
            phase: Phase::Down(NOT_FOLLOWED.to_string()),
        }
    }
}

impl Stream {
    /// A new stream started: whatever was known is dropped, its dump comes next.
    pub fn started(&mut self) {
        self.state = State::default();
        self.phase = Phase::Dumping;
    }

    /// One line of the stream. A line that is not understood is refused and changes nothing;
    /// lines before [`Stream::started`] start a stream implicitly.
    pub fn line(&mut self, text: &str) -> Result<(), ParseError> {
        if matches!(self.phase, Phase::Down(_)) {
            self.started();
        }
        self.state.apply_text(text)?;
        if self.state.initial_done {
            self.phase = Phase::Live;
        }
        Ok(())
    }

    /// The stream ended (the process exited, could not start, or was killed): nothing is
    /// known until a new one dumped its initial state.
    pub fn ended(&mut self, why: impl Into<String>) {
        self.state = State::default();
        self.phase = Phase::Down(why.into());
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The state, only while it is current.
    pub fn current(&self) -> Option<&State> {
        (self.phase == Phase::Live).then_some(&self.state)
    }

    /// Why the state is not current, if it is not.
    pub fn unknown_because(&self) -> Option<String> {
        match &self.phase {
            Phase::Live => None,
            Phase::Dumping => Some("drbdsetup events2 is listing the initial state".to_string()),
            Phase::Down(why) => Some(why.clone()),
        }
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    const DUMP: &str = "2026-11-30T02:10:00.000000+00:00 exists resource name:web role:Secondary suspended:no may_promote:yes promotion_score:10102\n\
        2026-11-30T02:10:00.000000+00:00 exists device name:web volume:0 minor:1000 disk:UpToDate client:no quorum:yes open:no size:1024\n\
        2026-11-30T02:10:00.000000+00:00 exists -";

    fn fed(text: &str) -> Stream {
        let mut stream = Stream::default();
        stream.started();
        for line in text.lines() {
            stream.line(line).unwrap();
        }
        stream
    }

    #[test]
    fn the_state_is_current_only_after_the_initial_dump() {
        let mut stream = Stream::default();
        assert_eq!(stream.unknown_because().as_deref(), Some(NOT_FOLLOWED));
        stream.started();
        let mut lines = DUMP.lines();
        stream.line(lines.next().unwrap()).unwrap();
        assert_eq!(stream.phase(), &Phase::Dumping);
        assert!(
            stream.current().is_none(),
            "a partial dump is not the state"
        );
        for line in lines {
            stream.line(line).unwrap();
        }
        assert_eq!(stream.phase(), &Phase::Live);
        let web = &stream.current().unwrap().resources["web"];
        assert_eq!(web.may_promote, Some(true));
        assert_eq!(web.promotion_score, Some(10102));
        assert_eq!(web.devices[&0].disk, Some(DiskState::UpToDate));
    }

    #[test]
    fn a_stream_that_ends_forgets_and_the_next_rebuilds_from_its_dump() {
        let mut stream = fed(DUMP);
        stream
            .line("2026-11-30T02:10:01.000000+00:00 change resource name:web role:Primary")
            .unwrap();
        stream.ended("drbdsetup events2 exited with status 20");
        assert!(stream.current().is_none(), "never stale");
        assert_eq!(
            stream.unknown_because().as_deref(),
            Some("drbdsetup events2 exited with status 20")
        );
        // The next stream says the resource is gone: nothing of the old one survives.
        stream.started();
        stream
            .line("2026-11-30T02:11:00.000000+00:00 exists -")
            .unwrap();
        assert!(stream.current().unwrap().resources.is_empty());
        // Lines without a start (a stream followed by someone who did not say) start one.
        let mut stream = Stream::default();
        for line in DUMP.lines() {
            stream.line(line).unwrap();
        }
        assert_eq!(
            stream.current().unwrap().resources["web"].role,
            Some(Role::Secondary)
        );
    }

    #[test]
    fn call_lines_other_than_split_brain_change_nothing() {
        let mut stream = fed(DUMP);
        let before = stream.clone();
        for line in [
            "2026-11-30T02:10:01.002145+00:00 call helper name:web peer-node-id:1 conn-name:node2 volume:0 helper:before-resync-target",
            "2026-11-30T02:10:01.004391+00:00 response helper name:web peer-node-id:1 conn-name:node2 volume:0 helper:before-resync-target status:0",
            "2026-11-30T02:10:30.800301+00:00 call helper name:web volume:0 helper:quorum-lost",
        ] {
            stream.line(line).unwrap();
        }
        assert_eq!(stream, before);
    }

    #[test]
    fn a_line_not_understood_changes_nothing() {
        let mut stream = fed(DUMP);
        let before = stream.clone();
        assert!(
            stream
                .line(
                    "2026-11-30T02:10:01.000000+00:00 change device name:web volume:0 disk:Sleepy"
                )
                .is_err()
        );
        assert_eq!(stream, before);
    }
}
