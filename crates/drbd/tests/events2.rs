//! The events2 parser on streams in the format `drbdsetup events2 --timestamps --statistics`
//! prints: the initial dump, a resync with progress, promotion, a disconnect, quorum loss, a
//! split brain, and the teardown.

use ferrite_drbd::events::{
    Action, ConnectionState, DiskState, Line, Object, ReplicationState, Role, State, parse_line,
};

fn replay(text: &str, upto: usize) -> State {
    let mut state = State::default();
    for line in text.lines().take(upto) {
        state.apply_text(line).unwrap_or_else(|e| panic!("{e}"));
    }
    state
}

const THREE_NODES: &str = include_str!("data/events2-three-nodes.log");
const SPLIT_BRAIN: &str = include_str!("data/events2-split-brain.log");

fn line_number(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_line_is_split_into_timestamp_action_object_and_fields() {
    let Line::Event(event) = parse_line(
        "2026-11-30T02:10:01.006021+00:00 change peer-device name:web peer-node-id:1 \
         conn-name:node2 volume:0 replication:WFBitMapT->SyncTarget done:0.00",
    )
    .unwrap() else {
        panic!("not an event")
    };
    assert_eq!(
        event.timestamp.as_deref(),
        Some("2026-11-30T02:10:01.006021+00:00")
    );
    assert_eq!(event.action, Action::Change);
    assert_eq!(event.object, Object::PeerDevice);
    assert_eq!(event.field("replication"), Some("SyncTarget"));
    assert_eq!(event.field("conn-name"), Some("node2"));
    assert_eq!(parse_line("exists -").unwrap(), Line::InitialStateDone);
    // Without --timestamps.
    assert!(matches!(
        parse_line("change resource name:web role:Primary").unwrap(),
        Line::Event(_)
    ));
}

#[test]
fn what_is_not_an_event_is_refused_with_the_line() {
    for bad in [
        "",
        "garbage",
        "change volume name:web",
        "change resource name:web role",
    ] {
        let error = parse_line(bad).unwrap_err().to_string();
        assert!(error.contains(&format!("'{bad}'")), "{error}");
    }
    let mut state = State::default();
    let error = state
        .apply_text("change device name:web volume:0 disk:Sideways")
        .unwrap_err()
        .to_string();
    assert!(error.contains("'Sideways' is no DiskState"), "{error}");
    assert!(
        state
            .apply_text("change device name:web disk:UpToDate")
            .is_err(),
        "a device event without a volume"
    );
}

#[test]
fn the_initial_dump_gives_every_object() {
    let state = replay(THREE_NODES, line_number(THREE_NODES, "exists -"));
    assert!(state.initial_done);
    let web = &state.resources["web"];
    assert_eq!(web.role, Some(Role::Secondary));
    assert_eq!(web.may_promote, Some(true));
    assert_eq!(web.promotion_score, Some(10102));
    assert_eq!(web.devices[&0].minor, Some(1000));
    assert_eq!(web.devices[&0].disk, Some(DiskState::Inconsistent));
    assert_eq!(web.devices[&0].size_kib, Some(2097152));
    assert!(web.quorum());
    assert!(!web.in_use());
    assert_eq!(web.connections.len(), 2);
    let node2 = &web.connections[&1];
    assert_eq!(node2.peer_name.as_deref(), Some("node2"));
    assert_eq!(node2.connection, Some(ConnectionState::Connected));
    assert_eq!(node2.path_established, Some(true));
    assert_eq!(node2.peer_devices[&0].peer_disk, Some(DiskState::UpToDate));
    assert_eq!(node2.peer_devices[&0].out_of_sync_kib, Some(2097152));
    assert_eq!(
        web.connections[&2].peer_devices[&0].peer_disk,
        Some(DiskState::Diskless)
    );
}

#[test]
fn a_resync_reports_its_progress_until_it_ends() {
    let state = replay(THREE_NODES, line_number(THREE_NODES, "done:43.20"));
    let device = &state.resources["web"].connections[&1].peer_devices[&0];
    assert_eq!(device.replication, Some(ReplicationState::SyncTarget));
    assert_eq!(device.done_percent, Some(43.2));
    assert_eq!(device.out_of_sync_kib, Some(1191936));

    let state = replay(
        THREE_NODES,
        line_number(THREE_NODES, "SyncTarget->Established"),
    );
    let web = &state.resources["web"];
    let device = &web.connections[&1].peer_devices[&0];
    assert_eq!(device.replication, Some(ReplicationState::Established));
    assert_eq!(
        device.done_percent, None,
        "no progress once the sync is over"
    );
    assert_eq!(device.out_of_sync_kib, Some(0));
    assert_eq!(web.devices[&0].disk, Some(DiskState::UpToDate));
}

#[test]
fn promotion_disconnects_and_quorum_loss_are_followed() {
    let state = replay(THREE_NODES, line_number(THREE_NODES, "open:yes"));
    let web = &state.resources["web"];
    assert_eq!(web.role, Some(Role::Primary));
    assert!(web.in_use());

    let state = replay(
        THREE_NODES,
        line_number(THREE_NODES, "Unconnected->Connecting"),
    );
    let node3 = &state.resources["web"].connections[&2];
    assert_eq!(node3.connection, Some(ConnectionState::Connecting));
    assert_eq!(node3.role, Some(Role::Unknown));
    assert_eq!(node3.path_established, Some(false));
    assert_eq!(
        node3.peer_devices[&0].replication,
        Some(ReplicationState::Off)
    );
    assert_eq!(node3.peer_devices[&0].peer_disk, Some(DiskState::DUnknown));
    assert!(state.resources["web"].quorum(), "node2 is still there");

    let state = replay(THREE_NODES, usize::MAX);
    let web = &state.resources["web"];
    assert_eq!(
        web.connections[&1].connection,
        Some(ConnectionState::NetworkFailure)
    );
    assert!(!web.quorum(), "alone of three");
    assert_eq!(web.devices[&0].quorum, Some(false));
}

#[test]
fn a_split_brain_is_kept_on_its_connection_and_destroy_forgets() {
    let state = replay(SPLIT_BRAIN, line_number(SPLIT_BRAIN, "StandAlone"));
    let db = &state.resources["db"];
    let node1 = &db.connections[&0];
    assert!(node1.split_brain);
    assert_eq!(node1.connection, Some(ConnectionState::StandAlone));
    assert_eq!(node1.peer_devices[&0].out_of_sync_kib, Some(40960));
    assert_eq!(db.role, Some(Role::Primary));

    let state = replay(SPLIT_BRAIN, line_number(SPLIT_BRAIN, "destroy connection"));
    assert!(state.resources["db"].connections.is_empty());
    let state = replay(SPLIT_BRAIN, usize::MAX);
    assert!(state.resources.is_empty());
}
