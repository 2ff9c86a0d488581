//! In-process tests of whole connections (handshake and transmission) over a duplex pipe,
//! with the in-memory volume; and property tests that arbitrary bytes from a client never make
//! the server panic or hang.

use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use ferrite_block::IoError;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::protocol::*;
use crate::testing::{
    MemoryVolume, RawClient, info_request, read_option_reply, request, send_option, start_handshake,
};
use crate::{ExportConfig, ExportName, Limits, Server, ServerConfig};

const SIZE: usize = 1 << 20;
/// Long enough for anything these tests wait for; a hang fails the test instead of blocking it.
const PATIENCE: Duration = Duration::from_secs(10);

fn name(name: &str) -> ExportName {
    ExportName::new(name).expect("a valid name")
}

fn server_with(
    config: ServerConfig,
    exports: &[(&str, bool)],
) -> (Server<MemoryVolume>, Vec<Arc<MemoryVolume>>) {
    let server = Server::new(config);
    let volumes = exports
        .iter()
        .map(|(export, read_only)| {
            let volume = Arc::new(MemoryVolume::new(SIZE));
            server
                .add_export(
                    ExportConfig::new(name(export))
                        .read_only(*read_only)
                        .description(format!("test volume {export}")),
                    Arc::clone(&volume),
                )
                .expect("a new export");
            volume
        })
        .collect();
    (server, volumes)
}

fn server() -> (Server<MemoryVolume>, Arc<MemoryVolume>) {
    let (server, mut volumes) = server_with(ServerConfig::default(), &[("vol0", false)]);
    (server, volumes.remove(0))
}

fn connect(server: &Server<MemoryVolume>) -> DuplexStream {
    let (client, served) = tokio::io::duplex(4 << 20);
    server.spawn_connection(served, "test".to_string());
    client
}

async fn go(server: &Server<MemoryVolume>, export: &str) -> RawClient<DuplexStream> {
    let (client, _) = tokio::time::timeout(PATIENCE, RawClient::connect(connect(server), export))
        .await
        .expect("in time")
        .expect("NBD_OPT_GO");
    client
}

/// The server closed its end: reading gives EOF (after any bytes still queued).
async fn assert_closed(stream: &mut DuplexStream) {
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection in time")
        .ok();
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_client_handshake_reports_refusals_and_strangers() {
    use crate::client::{HandshakeError, negotiate};
    let (server, _) = server();
    let mut stream = connect(&server);
    match negotiate(&mut stream, "nosuch").await {
        Err(HandshakeError::Refused { export, reply, .. }) => {
            assert_eq!(export, "nosuch");
            assert_eq!(reply, REP_ERR_UNKNOWN);
        }
        other => panic!("an unknown export must be refused, got {other:?}"),
    }

    // A peer that does not greet as a newstyle server is named as such.
    let (mut client, mut peer) = tokio::io::duplex(1024);
    peer.write_all(b"HTTP/1.1 400 Bad Request\r\n")
        .await
        .unwrap();
    match negotiate(&mut client, "vol0").await {
        Err(HandshakeError::NotNewstyle(_)) => {}
        other => panic!("a stranger must be named as such, got {other:?}"),
    }
}

#[tokio::test]
async fn go_reports_size_flags_and_block_sizes() {
    let (server, _) = server_with(ServerConfig::default(), &[("vol0", false), ("ro", true)]);
    let (_, info) = RawClient::connect(connect(&server), "vol0").await.unwrap();
    assert_eq!(info.size, SIZE as u64);
    assert_eq!(
        info.flags,
        TRANSMISSION_HAS_FLAGS
            | TRANSMISSION_SEND_FLUSH
            | TRANSMISSION_SEND_FUA
            | TRANSMISSION_SEND_TRIM
            | TRANSMISSION_SEND_WRITE_ZEROES
            | TRANSMISSION_CAN_MULTI_CONN
    );
    assert_eq!(info.block_sizes, Some((1, 4096, 32 << 20)));

    let (_, info) = RawClient::connect(connect(&server), "ro").await.unwrap();
    assert_eq!(
        info.flags,
        TRANSMISSION_HAS_FLAGS
            | TRANSMISSION_READ_ONLY
            | TRANSMISSION_SEND_FLUSH
            | TRANSMISSION_CAN_MULTI_CONN
    );
}

#[tokio::test]
async fn list_info_unsupported_options_and_abort() {
    let (server, _) = server_with(ServerConfig::default(), &[("a", false), ("b", false)]);
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();

    send_option(&mut stream, OPT_LIST, &[]).await.unwrap();
    let mut names = Vec::new();
    loop {
        let (reply, data) = read_option_reply(&mut stream, OPT_LIST).await.unwrap();
        if reply == REP_ACK {
            break;
        }
        assert_eq!(reply, REP_SERVER);
        let length = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
        names.push(String::from_utf8(data[4..4 + length].to_vec()).unwrap());
    }
    assert_eq!(names, ["a", "b"]);

    send_option(&mut stream, OPT_LIST, b"x").await.unwrap();
    let (reply, _) = read_option_reply(&mut stream, OPT_LIST).await.unwrap();
    assert_eq!(reply, REP_ERR_INVALID);

    for option in [
        OPT_STRUCTURED_REPLY,
        OPT_STARTTLS,
        OPT_SET_META_CONTEXT,
        0x1234_5678,
    ] {
        send_option(&mut stream, option, &[]).await.unwrap();
        let (reply, message) = read_option_reply(&mut stream, option).await.unwrap();
        assert_eq!(reply, REP_ERR_UNSUP, "option {option}");
        assert!(!message.is_empty());
    }

    // NBD_OPT_INFO with the name and description asked for.
    let mut data = Vec::new();
    data.put_u32(1);
    data.put_slice(b"b");
    data.put_u16(2);
    data.put_u16(INFO_NAME);
    data.put_u16(INFO_DESCRIPTION);
    send_option(&mut stream, OPT_INFO, &data).await.unwrap();
    let mut infos = Vec::new();
    loop {
        let (reply, data) = read_option_reply(&mut stream, OPT_INFO).await.unwrap();
        if reply == REP_ACK {
            break;
        }
        assert_eq!(reply, REP_INFO);
        infos.push(data);
    }
    let kinds: Vec<u16> = infos
        .iter()
        .map(|data| u16::from_be_bytes([data[0], data[1]]))
        .collect();
    assert_eq!(
        kinds,
        [INFO_EXPORT, INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION]
    );
    assert_eq!(&infos[2][2..], b"b");
    assert_eq!(&infos[3][2..], b"test volume b");

    // Unknown export, malformed data: errors, and negotiation goes on.
    send_option(&mut stream, OPT_GO, &info_request("nope"))
        .await
        .unwrap();
    let (reply, _) = read_option_reply(&mut stream, OPT_GO).await.unwrap();
    assert_eq!(reply, REP_ERR_UNKNOWN);
    send_option(&mut stream, OPT_GO, &[0, 0, 0, 9, 0, 0])
        .await
        .unwrap();
    let (reply, _) = read_option_reply(&mut stream, OPT_GO).await.unwrap();
    assert_eq!(reply, REP_ERR_INVALID);

    send_option(&mut stream, OPT_ABORT, &[]).await.unwrap();
    let (reply, _) = read_option_reply(&mut stream, OPT_ABORT).await.unwrap();
    assert_eq!(reply, REP_ACK);
    assert_closed(&mut stream).await;
    server.closed().await;
}

#[tokio::test]
async fn export_name_pads_with_zeroes_unless_the_client_asked_not_to() {
    let (server, volume) = server();
    for (client_flags, expected) in [(1u32, 134usize), (3, 10)] {
        let mut stream = connect(&server);
        let mut greeting = [0u8; GREETING_LEN];
        stream.read_exact(&mut greeting).await.unwrap();
        stream.write_all(&client_flags.to_be_bytes()).await.unwrap();
        send_option(&mut stream, OPT_EXPORT_NAME, b"vol0")
            .await
            .unwrap();
        let mut reply = vec![0u8; expected];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            u64::from_be_bytes(reply[0..8].try_into().unwrap()),
            SIZE as u64
        );
        // Transmission works right after.
        let mut client = RawClientAfterExportName(stream);
        client.read_back().await;
    }
    eventually("both sessions closed", || volume.sessions() == 0).await;
    assert_eq!(volume.sessions_opened(), 2);
}

/// A client that entered transmission with NBD_OPT_EXPORT_NAME.
struct RawClientAfterExportName(DuplexStream);

impl RawClientAfterExportName {
    async fn read_back(&mut self) {
        let header = request(CMD_READ, 0, 7, 0, 8).encode();
        self.0.write_all(&header).await.unwrap();
        let mut reply = [0u8; SIMPLE_REPLY_LEN + 8];
        self.0.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[4..8], &[0, 0, 0, 0]);
        assert_eq!(&reply[8..16], &7u64.to_be_bytes());
        self.0
            .write_all(&request(CMD_DISC, 0, 8, 0, 0).encode())
            .await
            .unwrap();
        assert_closed(&mut self.0).await;
    }
}

#[tokio::test]
async fn violations_during_the_handshake_close_the_connection() {
    let (server, _) = server();
    // Unknown client flags.
    let mut stream = connect(&server);
    let mut greeting = [0u8; GREETING_LEN];
    stream.read_exact(&mut greeting).await.unwrap();
    stream.write_all(&[0, 0, 0, 4]).await.unwrap();
    assert_closed(&mut stream).await;

    // An option longer than MAX_OPTION_BYTES.
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();
    let mut header = Vec::new();
    header.put_u64(OPTION_MAGIC);
    header.put_u32(OPT_GO);
    header.put_u32(MAX_OPTION_BYTES + 1);
    stream.write_all(&header).await.unwrap();
    assert_closed(&mut stream).await;

    // A bad option magic.
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_closed(&mut stream).await;

    // NBD_OPT_EXPORT_NAME of an export that does not exist: no way to say so but hang up.
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();
    send_option(&mut stream, OPT_EXPORT_NAME, b"nope")
        .await
        .unwrap();
    assert_closed(&mut stream).await;

    tokio::time::timeout(PATIENCE, server.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(200);
    let (server, _) = server_with(
        ServerConfig {
            handshake_timeout: timeout,
            ..ServerConfig::default()
        },
        &[("vol0", false)],
    );
    let started = tokio::time::Instant::now();
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();
    // Half an option, then nothing.
    stream.write_all(&OPTION_MAGIC.to_be_bytes()).await.unwrap();
    assert_closed(&mut stream).await;
    let waited = started.elapsed();
    assert!(waited >= timeout, "closed after {waited:?}");
    assert!(waited < timeout * 10, "closed only after {waited:?}");
    server.closed().await;
}

#[tokio::test]
async fn writes_read_back_and_every_command_reaches_the_volume() {
    let (server, volume) = server();
    let mut client = go(&server, "vol0").await;
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();

    let reply = client
        .call(request(CMD_WRITE, CMD_FLAG_FUA, 1, 4096, 8192), &pattern)
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
    assert_eq!(volume.fua_writes(), 1);
    let reply = client
        .call(request(CMD_READ, 0, 2, 4096, 8192), &[])
        .await
        .unwrap();
    assert_eq!((reply.error, &reply.data[..]), (0, &pattern[..]));
    assert_eq!(&volume.contents()[4096..12288], &pattern[..]);

    // Unaligned, odd sizes: the minimum block size is 1.
    let reply = client
        .call(request(CMD_WRITE, 0, 3, 4097, 3), b"abc")
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
    let reply = client
        .call(request(CMD_READ, 0, 4, 4096, 5), &[])
        .await
        .unwrap();
    assert_eq!(&reply.data[..], &[0, b'a', b'b', b'c', pattern[4]]);

    let reply = client
        .call(request(CMD_FLUSH, 0, 5, 0, 0), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
    assert_eq!(volume.flushes(), 1);

    let reply = client
        .call(
            request(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 6, 4096, 4096),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
    assert!(volume.contents()[4096..8192].iter().all(|b| *b == 0));

    let reply = client
        .call(request(CMD_TRIM, CMD_FLAG_FUA, 7, 8192, 4096), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
    assert_eq!(volume.flushes(), 2, "a trim with FUA flushes");

    let reply = client
        .call(request(CMD_READ, 0, 8, 0, 0), &[])
        .await
        .unwrap();
    assert_eq!((reply.error, reply.data.len()), (0, 0));

    assert_eq!(volume.sessions(), 1);
    client
        .send(request(CMD_DISC, 0, 9, 0, 0), &[])
        .await
        .unwrap();
    assert_closed(client.stream_mut()).await;
    eventually("the session closed", || volume.sessions() == 0).await;
    server.closed().await;
}

#[tokio::test]
async fn invalid_requests_get_errors_and_the_connection_goes_on() {
    let (server, volumes) = server_with(ServerConfig::default(), &[("rw", false), ("ro", true)]);
    let mut client = go(&server, "rw").await;
    let size = SIZE as u64;
    let cases = [
        (request(CMD_READ, 0, 1, size, 1), 22),
        (request(CMD_READ, 0, 2, u64::MAX, 1), 22),
        (request(CMD_READ, 0, 3, 0, MAXIMUM_PAYLOAD + 1), 22),
        (request(CMD_TRIM, 0, 4, size - 1, 2), 22),
        (request(CMD_WRITE_ZEROES, 0, 5, size, 1), 28),
        (request(CMD_READ, 1 << 2, 6, 0, 1), 22),
        (request(7, 0, 7, 0, 1), 22),
    ];
    for (header, error) in cases {
        let reply = client.call(header, &[]).await.unwrap();
        assert_eq!(reply.error, error, "{header:?}");
        assert!(reply.data.is_empty());
    }
    // A write past the end still has its payload read, and gets ENOSPC.
    let reply = client
        .call(request(CMD_WRITE, 0, 8, size - 1, 2), b"xy")
        .await
        .unwrap();
    assert_eq!(reply.error, 28);
    let reply = client
        .call(request(CMD_READ, 0, 9, 0, 4), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 0);

    // Read-only: EPERM, and the volume is untouched.
    let mut client = go(&server, "ro").await;
    let reply = client
        .call(request(CMD_WRITE, 0, 1, 0, 2), b"xy")
        .await
        .unwrap();
    assert_eq!(reply.error, 1);
    let reply = client
        .call(request(CMD_TRIM, 0, 2, 0, 2), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 1);
    assert!(volumes[1].contents().iter().all(|b| *b == 0));
    let reply = client
        .call(request(CMD_READ, 0, 3, 0, 2), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
}

#[tokio::test]
async fn volume_errors_reach_the_client_as_nbd_errors() {
    let (server, volume) = server();
    let mut client = go(&server, "vol0").await;
    let cases = [
        (IoError::ReadOnly("another member is primary".into()), 1),
        (IoError::Io("disk".into()), 5),
        (IoError::NoSpace("full".into()), 28),
        (IoError::Invalid("misaligned".into()), 22),
        (IoError::Shutdown, 108),
    ];
    for (cookie, (error, code)) in cases.into_iter().enumerate() {
        volume.fail_with(Some(error));
        let reply = client
            .call(request(CMD_WRITE, 0, cookie as u64, 0, 4), b"abcd")
            .await
            .unwrap();
        assert_eq!(reply.error, code);
        let reply = client
            .call(request(CMD_READ, 0, cookie as u64, 0, 4), &[])
            .await
            .unwrap();
        assert_eq!((reply.error, reply.data.len()), (code, 0));
    }
    volume.fail_with(None);
    let reply = client
        .call(request(CMD_READ, 0, 99, 0, 4), &[])
        .await
        .unwrap();
    assert_eq!(reply.error, 0);
}

#[tokio::test]
async fn requests_run_concurrently_and_replies_come_as_they_complete() {
    let (server, volume) = server();
    let mut client = go(&server, "vol0").await;
    volume.hold();
    for cookie in 0..10 {
        client
            .send(request(CMD_READ, 0, cookie, cookie * 4096, 4096), &[])
            .await
            .unwrap();
    }
    eventually("ten calls in flight", || volume.calls_in_flight() == 10).await;
    // An invalid request needs no volume call: its reply overtakes the ten held ones.
    client
        .send(request(CMD_READ, 0, 100, SIZE as u64, 1), &[])
        .await
        .unwrap();
    let first = client.reply().await.unwrap();
    assert_eq!((first.cookie, first.error), (100, 22));
    volume.release();
    let mut cookies: Vec<u64> = Vec::new();
    for _ in 0..10 {
        let reply = client.reply().await.unwrap();
        assert_eq!((reply.error, reply.data.len()), (0, 4096));
        cookies.push(reply.cookie);
    }
    cookies.sort();
    assert_eq!(cookies, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn piped_reads_reach_the_client_in_order_among_in_memory_replies() {
    let (server, volume) = server();
    let contents: Vec<u8> = (0..SIZE as u32).map(|i| (i % 253) as u8).collect();
    let mut client = go(&server, "vol0").await;
    client
        .call(request(CMD_WRITE, 0, 0, 0, SIZE as u32), &contents)
        .await
        .unwrap();
    volume.pipe_reads(true);
    // Large reads (piped, staged out in pieces) and small ones (in memory), queued together so
    // that one batch of replies mixes them.
    let reads: Vec<(u64, u32)> = vec![
        (0, SIZE as u32),
        (4096, 4096),
        (8192, 128 << 10),
        (0, 512),
        (SIZE as u64 - (300 << 10), 300 << 10),
        (12288, 127 << 10),
        (65536, 512 << 10),
    ];
    volume.hold();
    for (cookie, (offset, length)) in reads.iter().enumerate() {
        client
            .send(request(CMD_READ, 0, cookie as u64, *offset, *length), &[])
            .await
            .unwrap();
    }
    eventually("every read in flight", || {
        volume.calls_in_flight() == reads.len()
    })
    .await;
    volume.release();
    for _ in 0..reads.len() {
        let reply = tokio::time::timeout(PATIENCE, client.reply())
            .await
            .expect("in time")
            .unwrap();
        let (offset, length) = reads[reply.cookie as usize];
        let wanted = &contents[offset as usize..offset as usize + length as usize];
        assert_eq!(reply.error, 0, "read {}", reply.cookie);
        assert!(
            reply.data[..] == wanted[..],
            "read {} came back wrong",
            reply.cookie
        );
    }
    // 1 MiB, 128 KiB, 300 KiB and 512 KiB; the others are below the piped size.
    assert_eq!(volume.piped_reads(), 4);
    // A piped read that fails is an error reply, and the connection goes on.
    volume.fail_with(Some(IoError::Io("disk gone".to_string())));
    let reply = client
        .call(request(CMD_READ, 0, 50, 0, 256 << 10), &[])
        .await
        .unwrap();
    assert_eq!((reply.error, reply.data.len()), (5, 0));
    volume.fail_with(None);
    let reply = client
        .call(request(CMD_READ, 0, 51, 0, 256 << 10), &[])
        .await
        .unwrap();
    assert!(reply.error == 0 && reply.data[..] == contents[..256 << 10]);
}

#[tokio::test]
async fn in_flight_requests_and_bytes_are_bounded() {
    let limits = Limits {
        max_requests: 8,
        max_bytes: 64 << 10,
        ..Limits::default()
    };
    let (server, mut volumes) = server_with(
        ServerConfig {
            limits,
            ..ServerConfig::default()
        },
        &[("vol0", false)],
    );
    let volume = volumes.remove(0);
    let mut client = go(&server, "vol0").await;

    // By count: 20 small reads, 8 at a time.
    volume.hold();
    for cookie in 0..20 {
        client
            .send(request(CMD_READ, 0, cookie, 0, 512), &[])
            .await
            .unwrap();
    }
    eventually("the limit reached", || volume.calls_in_flight() == 8).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(volume.calls_in_flight(), 8, "no more than the limit");
    volume.release();
    for _ in 0..20 {
        assert_eq!(client.reply().await.unwrap().error, 0);
    }
    assert_eq!(volume.most_calls_in_flight(), 8);

    // By bytes: 16 KiB writes, four fill 64 KiB.
    volume.hold();
    let payload = vec![7u8; 16 << 10];
    for cookie in 0..10 {
        client
            .send(request(CMD_WRITE, 0, cookie, 0, 16 << 10), &payload)
            .await
            .unwrap();
    }
    eventually("the byte limit reached", || volume.calls_in_flight() == 4).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(volume.calls_in_flight(), 4, "no more than 64 KiB in flight");
    volume.release();
    for _ in 0..10 {
        assert_eq!(client.reply().await.unwrap().error, 0);
    }
}

#[tokio::test]
async fn removing_an_export_answers_outstanding_requests_with_eshutdown_and_closes() {
    let (server, volume) = server();
    let mut client = go(&server, "vol0").await;
    volume.hold();
    for cookie in 0..3 {
        client
            .send(request(CMD_READ, 0, cookie, 0, 4096), &[])
            .await
            .unwrap();
    }
    eventually("three calls in flight", || volume.calls_in_flight() == 3).await;
    server.remove_export(&name("vol0")).unwrap();
    for _ in 0..3 {
        let reply = client.reply().await.unwrap();
        assert_eq!((reply.error, reply.data.len()), (108, 0));
    }
    assert_closed(client.stream_mut()).await;
    eventually("the session closed", || volume.sessions() == 0).await;
    tokio::time::timeout(PATIENCE, server.closed())
        .await
        .unwrap();
    // The dropped calls ended too.
    eventually("no call left", || volume.calls_in_flight() == 0).await;
    volume.release();

    // Gone for new clients, and back once added again.
    let mut stream = connect(&server);
    start_handshake(&mut stream).await.unwrap();
    send_option(&mut stream, OPT_GO, &info_request("vol0"))
        .await
        .unwrap();
    assert_eq!(
        read_option_reply(&mut stream, OPT_GO).await.unwrap().0,
        REP_ERR_UNKNOWN
    );
    assert!(server.remove_export(&name("vol0")).is_err());
    server
        .add_export(ExportConfig::new(name("vol0")), Arc::clone(&volume))
        .unwrap();
    assert!(
        server
            .add_export(ExportConfig::new(name("vol0")), Arc::clone(&volume))
            .is_err()
    );
    send_option(&mut stream, OPT_GO, &info_request("vol0"))
        .await
        .unwrap();
    loop {
        let (reply, _) = read_option_reply(&mut stream, OPT_GO).await.unwrap();
        if reply == REP_ACK {
            break;
        }
        assert_eq!(reply, REP_INFO);
    }
}

#[tokio::test]
async fn a_client_that_takes_no_replies_is_closed_after_the_close_timeout() {
    let close_timeout = Duration::from_millis(200);
    let (server, mut volumes) = server_with(
        ServerConfig {
            limits: Limits {
                close_timeout,
                ..Limits::default()
            },
            ..ServerConfig::default()
        },
        &[("vol0", false)],
    );
    let volume = volumes.remove(0);
    // A pipe that holds little: the server's replies back up at once.
    let (stream, served) = tokio::io::duplex(64 << 10);
    server.spawn_connection(served, "test".to_string());
    let (mut client, _) = RawClient::connect(stream, "vol0").await.unwrap();
    for cookie in 0..64 {
        client
            .send(request(CMD_READ, 0, cookie, 0, 64 << 10), &[])
            .await
            .unwrap();
    }
    // Let the server take them all (the replies back up after the first).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    server.remove_export(&name("vol0")).unwrap();
    tokio::time::timeout(PATIENCE, server.closed())
        .await
        .unwrap();
    assert!(started.elapsed() >= close_timeout);
    assert_eq!(volume.sessions(), 0);
}

#[tokio::test]
async fn shutting_down_closes_every_connection() {
    let (server, volume) = server();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(go(&server, "vol0").await);
    }
    let mut handshaking = connect(&server);
    start_handshake(&mut handshaking).await.unwrap();
    volume.hold();
    clients[0]
        .send(request(CMD_READ, 0, 1, 0, 1), &[])
        .await
        .unwrap();
    eventually("a call in flight", || volume.calls_in_flight() == 1).await;
    assert_eq!(server.connection_count(), 4);

    server.shutdown();
    let reply = clients[0].reply().await.unwrap();
    assert_eq!(reply.error, 108);
    for client in &mut clients {
        assert_closed(client.stream_mut()).await;
    }
    assert_closed(&mut handshaking).await;
    tokio::time::timeout(PATIENCE, server.closed())
        .await
        .unwrap();
    assert_eq!(volume.sessions(), 0);
}

#[tokio::test]
async fn violations_in_transmission_close_the_connection() {
    let (server, volume) = server();
    // A bad magic.
    let mut client = go(&server, "vol0").await;
    client.stream_mut().write_all(&[0x55; 28]).await.unwrap();
    assert_closed(client.stream_mut()).await;
    // A write longer than the maximum payload.
    let mut client = go(&server, "vol0").await;
    let header = request(CMD_WRITE, 0, 1, 0, MAX_REQUEST_BYTES_PLUS_ONE).encode();
    client.stream_mut().write_all(&header).await.unwrap();
    assert_closed(client.stream_mut()).await;
    eventually("the sessions closed", || volume.sessions() == 0).await;
    server.closed().await;
}

const MAX_REQUEST_BYTES_PLUS_ONE: u32 = ferrite_block::MAX_REQUEST_BYTES + 1;

#[tokio::test]
async fn a_client_that_hangs_up_mid_request_leaves_nothing_behind() {
    let (server, volume) = server();
    // In the middle of a write's payload.
    let mut client = go(&server, "vol0").await;
    let header = request(CMD_WRITE, 0, 1, 0, 65536).encode();
    client.stream_mut().write_all(&header).await.unwrap();
    client.stream_mut().write_all(&[1u8; 1000]).await.unwrap();
    drop(client);
    // In the middle of a header.
    let mut client = go(&server, "vol0").await;
    client.stream_mut().write_all(&header[..10]).await.unwrap();
    drop(client);
    // With calls in flight.
    let mut client = go(&server, "vol0").await;
    volume.hold();
    client
        .send(request(CMD_READ, 0, 1, 0, 4096), &[])
        .await
        .unwrap();
    eventually("a call in flight", || volume.calls_in_flight() == 1).await;
    drop(client);
    volume.release();

    tokio::time::timeout(PATIENCE, server.closed())
        .await
        .unwrap();
    assert_eq!(volume.sessions(), 0);
    assert_eq!(volume.sessions_opened(), 3);
    assert!(
        volume.contents().iter().all(|b| *b == 0),
        "the partial write was dropped"
    );
}

#[test]
fn export_names_follow_the_rules_for_strings() {
    assert!(ExportName::new("").is_ok());
    assert!(ExportName::new("web/0").is_ok());
    assert!(ExportName::new("a\0b").is_err());
    assert!(ExportName::new("x".repeat(4097)).is_err());
}

/// Runs one connection fed with `bytes` (then EOF), draining what the server sends; the
/// connection must end within the patience, without a panic.
fn run_with_client_bytes(prefix: Vec<u8>, bytes: Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (server, _) = server_with(
            ServerConfig {
                handshake_timeout: Duration::from_secs(2),
                ..ServerConfig::default()
            },
            &[("", false), ("vol0", false)],
        );
        let (client, served) = tokio::io::duplex(64 << 10);
        let connection = server.spawn_connection(served, "fuzz".to_string());
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = from_server.read_to_end(&mut sink).await;
        });
        let _ = to_server.write_all(&prefix).await;
        let _ = to_server.write_all(&bytes).await;
        let _ = to_server.shutdown().await;
        tokio::time::timeout(PATIENCE, connection)
            .await
            .expect("the connection ends in time")
            .expect("the connection task does not panic");
        drop(to_server);
        drain.abort();
    });
}

/// Bytes that get past the greeting and GO into transmission on the default export.
fn handshake_into_transmission() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.put_u32(CLIENT_FLAG_FIXED_NEWSTYLE | CLIENT_FLAG_NO_ZEROES);
    bytes.put_u64(OPTION_MAGIC);
    bytes.put_u32(OPT_GO);
    let data = info_request("");
    bytes.put_u32(data.len() as u32);
    bytes.put_slice(&data);
    bytes
}

/// A mostly well-formed option: known or random code, a length that may lie.
fn arbitrary_option() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(OPT_EXPORT_NAME),
            Just(OPT_ABORT),
            Just(OPT_LIST),
            Just(OPT_INFO),
            Just(OPT_GO),
            Just(OPT_STRUCTURED_REPLY),
            any::<u32>()
        ],
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![Just(None), Just(Some(u32::MAX)), (0u32..100).prop_map(Some)],
    )
        .prop_map(|(option, data, lie)| {
            let mut bytes = Vec::new();
            bytes.put_u64(OPTION_MAGIC);
            bytes.put_u32(option);
            bytes.put_u32(lie.unwrap_or(data.len() as u32));
            bytes.put_slice(&data);
            bytes
        })
}

/// A mostly well-formed request: any command, flags, offset and length, with a short payload.
fn arbitrary_request() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        prop_oneof![0u16..8, any::<u16>()],
        any::<u64>(),
        prop_oneof![0u64..(SIZE as u64), any::<u64>()],
        prop_oneof![0u32..8192, any::<u32>()],
        proptest::collection::vec(any::<u8>(), 0..256),
        any::<bool>(),
    )
        .prop_map(
            |(flags, command, cookie, offset, length, payload, bad_magic)| {
                let mut bytes = request(command, flags, cookie, offset, length)
                    .encode()
                    .to_vec();
                if bad_magic {
                    bytes[3] ^= 0x40;
                }
                bytes.extend_from_slice(&payload);
                bytes
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_in_the_handshake_never_panic_or_hang(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        run_with_client_bytes(Vec::new(), bytes);
    }

    #[test]
    fn arbitrary_options_never_panic_or_hang(
        options in proptest::collection::vec(arbitrary_option(), 0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut prefix = Vec::new();
        prefix.put_u32(CLIENT_FLAG_FIXED_NEWSTYLE);
        run_with_client_bytes(prefix, [options.concat(), tail].concat());
    }

    #[test]
    fn arbitrary_bytes_in_transmission_never_panic_or_hang(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024)
    ) {
        run_with_client_bytes(handshake_into_transmission(), bytes);
    }

    #[test]
    fn arbitrary_requests_never_panic_or_hang(
        requests in proptest::collection::vec(arbitrary_request(), 0..16),
    ) {
        run_with_client_bytes(handshake_into_transmission(), requests.concat());
    }
}
