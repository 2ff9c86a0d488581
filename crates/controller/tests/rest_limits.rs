//! The REST server's limits, each crossed over real TCP connections: the header, body,
//! keep-alive and send timeouts, the connection cap with its eviction, and the `ApiCallRc`
//! answers to heads the server refuses (414, 431, 400, 411). Also what the limits must not
//! break: keep-alive, pipelining, `Expect: 100-continue`, and a graceful shutdown that lets
//! requests in progress finish.
//!
//! The server runs in the test's runtime with a small router and thresholds of a few hundred
//! milliseconds; the assertions leave room for a loaded machine on the late side only.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use ferrite_controller::http::response::JsonBody;
use ferrite_controller::http::server::{MAX_HEADERS, MAX_URI_BYTES, ServerLimits, serve};
use ferrite_types::ApiCallRc;
use ferrite_types::api_call_rc::code;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every timeout of the test server.
const LIMIT: Duration = Duration::from_millis(300);
/// Well before a timeout: the connection must still be open.
const BEFORE_LIMIT: Duration = Duration::from_millis(150);
/// How long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long `/slow` takes.
const SLOW: Duration = Duration::from_millis(500);
/// The size of `/large`'s answer: more than loopback's socket buffers hold.
const LARGE: usize = 48 << 20;

fn limits(max_connections: usize) -> ServerLimits {
    ServerLimits {
        header_timeout: LIMIT,
        body_timeout: LIMIT,
        keep_alive_timeout: LIMIT,
        send_timeout: LIMIT,
        max_connections,
    }
}

/// Any JSON, echoed back.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Echo(Value);

impl ferrite_types::rest::validate::Validate for Echo {
    fn validate(&self) -> Result<(), ferrite_types::rest::validate::InvalidValue> {
        Ok(())
    }
}

fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|JsonBody(Echo(value)): JsonBody<Echo>| async move { axum::Json(value) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(SLOW).await;
                "slow"
            }),
        )
        .route("/large", get(|| async { vec![b'x'; LARGE] }))
}

struct TestServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl TestServer {
    async fn start(limits: ServerLimits) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app(), limits, async {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }

    /// A connection that has sent `bytes`.
    async fn send(&self, bytes: &[u8]) -> TcpStream {
        let mut stream = self.connect().await;
        stream.write_all(bytes).await.unwrap();
        stream
    }
}

/// An HTTP answer as the client read it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as the single error entry every refusal carries.
    fn refusal(&self) -> ApiCallRc {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let entries: Vec<ApiCallRc> = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an ApiCallRc list ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        });
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = entries.into_iter().next().unwrap();
        assert!(entry.is_error(), "{entry:?}");
        assert_eq!(
            entry.ret_code().code(),
            code::FAIL_INVLD_REQUEST,
            "{entry:?}"
        );
        assert!(!entry.message.is_empty(), "{entry:?}");
        assert!(
            entry.cause.as_deref().is_some_and(|c| !c.is_empty()),
            "{entry:?}"
        );
        assert!(
            entry.correction.as_deref().is_some_and(|c| !c.is_empty()),
            "{entry:?}"
        );
        entry
    }
}

/// Reads one answer; `pending` keeps what arrived beyond it.
async fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Answer {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(length) = response.parse(pending).unwrap() {
                let status = response.code.unwrap();
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let body_length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while pending.len() < length + body_length {
                    let mut chunk = vec![0; 64 * 1024];
                    let read = stream.read(&mut chunk).await.unwrap();
                    assert!(read > 0, "the connection closed in the middle of an answer");
                    pending.extend_from_slice(&chunk[..read]);
                }
                let body = pending[length..length + body_length].to_vec();
                pending.drain(..length + body_length);
                return Answer {
                    status,
                    headers,
                    body,
                };
            }
            let mut chunk = vec![0; 64 * 1024];
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(
                read > 0,
                "the connection closed before an answer; got {:?}",
                String::from_utf8_lossy(pending)
            );
            pending.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("an answer within the test's patience")
}

/// Sends `request` on a fresh connection and reads the answer.
async fn ask(server: &TestServer, request: &[u8]) -> (TcpStream, Answer) {
    let mut stream = server.send(request).await;
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    (stream, answer)
}

/// Whether the server closed the connection (EOF or reset) within `within`; fails on data.
async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut byte)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data: {:?}", byte),
    }
}

/// Waits for the close and returns how long it took from `since`.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    assert!(
        closes_within(stream, PATIENCE).await,
        "the connection stayed open"
    );
    since.elapsed()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n";
const HALF_SENT: &[u8] = b"GET /health HTTP/1.1\r\nHost: te";

#[tokio::test]
async fn a_head_not_complete_within_the_header_timeout_gets_408_and_is_closed() {
    let server = TestServer::start(limits(64)).await;
    let started = Instant::now();
    let mut stream = server.send(HALF_SENT).await;
    assert!(!closes_within(&mut stream, BEFORE_LIMIT).await);
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert!(started.elapsed() >= LIMIT);
    assert_eq!(answer.status, 408);
    answer.refusal();
    assert!(closes_within(&mut stream, PATIENCE).await);

    // A connection that sends nothing is closed without an answer.
    let started = Instant::now();
    let mut silent = server.connect().await;
    assert!(closed_after(&mut silent, started).await >= LIMIT);

    // The timeout is for the whole head, not between bytes: dripping does not extend it.
    let started = Instant::now();
    let mut dripping = server.connect().await;
    let mut answer = None;
    for byte in HALF_SENT {
        if dripping.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut first = [0u8; 1];
        if let Ok(Ok(1)) =
            tokio::time::timeout(Duration::from_millis(40), dripping.peek(&mut first)).await
        {
            answer = Some(read_answer(&mut dripping, &mut Vec::new()).await);
            break;
        }
    }
    let answer = answer.expect("a 408 before the drip ended");
    assert_eq!(answer.status, 408);
    assert!(started.elapsed() < LIMIT * 3);
}

#[tokio::test]
async fn a_body_not_complete_within_the_body_timeout_gets_408_and_is_closed() {
    let server = TestServer::start(limits(64)).await;
    let started = Instant::now();
    let mut stream = server
        .send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"a\": ")
        .await;
    assert!(!closes_within(&mut stream, BEFORE_LIMIT).await);
    let answer = read_answer(&mut stream, &mut Vec::new()).await;
    assert!(started.elapsed() >= LIMIT);
    assert_eq!(answer.status, 408);
    let entry = answer.refusal();
    assert!(
        entry.cause.as_deref().unwrap().contains("not complete"),
        "{entry:?}"
    );
    assert!(closes_within(&mut stream, PATIENCE).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = TestServer::start(limits(64)).await;
    let (mut stream, first) = ask(&server, HEALTH).await;
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    assert_ne!(first.header("connection"), Some("close"));
    // Still open, and serving, before the timeout.
    tokio::time::sleep(BEFORE_LIMIT).await;
    stream.write_all(HEALTH).await.unwrap();
    let second = read_answer(&mut stream, &mut Vec::new()).await;
    assert_eq!(second.status, 200);
    let idle_since = Instant::now();
    let idle = closed_after(&mut stream, idle_since).await;
    assert!(idle >= LIMIT, "closed after {idle:?}");
}

#[tokio::test]
async fn at_the_cap_the_connection_waiting_longest_is_evicted() {
    let server = TestServer::start(limits(4)).await;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(server.send(HALF_SENT).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, answer) = ask(&server, HEALTH).await;
    assert_eq!(answer.status, 200, "a new client gets in at the cap");
    assert!(
        closes_within(&mut waiting[0], PATIENCE).await,
        "the oldest half-sent connection is evicted"
    );
    for stream in &mut waiting[1..] {
        assert!(!closes_within(stream, Duration::from_millis(50)).await);
    }
}

#[tokio::test]
async fn connections_busy_with_a_request_are_never_evicted() {
    let server = TestServer::start(limits(2)).await;
    let slow = b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut busy = vec![server.send(slow).await, server.send(slow).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = server.send(HEALTH).await;
    assert!(
        closes_within(&mut refused, PATIENCE).await,
        "every connection is busy: the new one is refused"
    );
    for stream in &mut busy {
        let answer = read_answer(stream, &mut Vec::new()).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"slow"[..]));
    }
    // Idle between requests, they may now be evicted for a newcomer.
    let (_, answer) = ask(&server, HEALTH).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_connection_evicted_while_its_body_arrives_gets_408() {
    let server = TestServer::start(limits(1)).await;
    let mut slow_body = server
        .send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, answer) = ask(&server, HEALTH).await;
    assert_eq!(answer.status, 200);
    let evicted = read_answer(&mut slow_body, &mut Vec::new()).await;
    assert_eq!(evicted.status, 408);
    let entry = evicted.refusal();
    assert!(
        entry.cause.as_deref().unwrap().contains("make room"),
        "{entry:?}"
    );
    assert!(closes_within(&mut slow_body, PATIENCE).await);
}

#[tokio::test]
async fn a_response_the_client_does_not_read_is_abandoned_after_the_send_timeout() {
    let server = TestServer::start(limits(64)).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.address).await.unwrap();
    stream
        .write_all(b"GET /large HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(LIMIT * 3).await;
    let mut received = 0;
    let mut chunk = vec![0; 1 << 20];
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received += read,
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the server kept the stalled response open");
    assert!(
        received < LARGE,
        "the whole response arrived ({received} bytes) although the client stalled"
    );
}

#[tokio::test]
async fn refused_heads_are_answered_with_an_api_call_rc() {
    let server = TestServer::start(limits(64)).await;
    let long_uri = format!(
        "GET /v1/nodes?nodes={} HTTP/1.1\r\nHost: test\r\n\r\n",
        "a".repeat(MAX_URI_BYTES)
    );
    let endless_uri = format!("GET /{}", "a".repeat(20 * 1024));
    let mut many_headers = "GET /health HTTP/1.1\r\n".to_string();
    for i in 0..=MAX_HEADERS {
        many_headers.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    many_headers.push_str("\r\n");
    let large_header = format!(
        "GET /health HTTP/1.1\r\nHost: test\r\nX-Large: {}\r\n\r\n",
        "b".repeat(17 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("URI too long", long_uri.into_bytes(), 414),
        ("request line without end", endless_uri.into_bytes(), 414),
        ("too many header fields", many_headers.into_bytes(), 431),
        ("header fields too large", large_header.into_bytes(), 431),
        (
            "bad request line",
            b"GET /health HTTP/1.1 and more\r\n\r\n".to_vec(),
            400,
        ),
        ("bad method", b"G@T /health HTTP/1.1\r\n\r\n".to_vec(), 400),
        (
            "unsupported version",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            400,
        ),
        (
            "header without colon",
            b"GET /health HTTP/1.1\r\nHost test\r\n\r\n".to_vec(),
            400,
        ),
        (
            "control character in a header value",
            b"GET /health HTTP/1.1\r\nHost: te\x07st\r\n\r\n".to_vec(),
            400,
        ),
        (
            "invalid Content-Length",
            b"POST /echo HTTP/1.1\r\nContent-Length: ten\r\n\r\n".to_vec(),
            400,
        ),
        (
            "conflicting Content-Length",
            b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
        ),
        (
            "chunked body",
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            411,
        ),
    ];
    for (case, request, status) in cases {
        let (mut stream, answer) = ask(&server, &request).await;
        assert_eq!(answer.status, status, "{case}: {answer:?}");
        assert_eq!(answer.header("connection"), Some("close"), "{case}");
        let entry = answer.refusal();
        eprintln!(
            "{case}: {status} {}",
            serde_json::to_string(&entry).unwrap()
        );
        assert!(closes_within(&mut stream, PATIENCE).await, "{case}");
    }
    // A refused head after good requests on the same connection: the good ones are answered.
    let mut stream = server.connect().await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nBad\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_answer(&mut stream, &mut pending).await.status, 200);
    assert_eq!(read_answer(&mut stream, &mut pending).await.status, 400);
}

#[tokio::test]
async fn keep_alive_carries_bodies_pipelined_requests_and_100_continue() {
    let server = TestServer::start(limits(64)).await;
    let mut stream = server.connect().await;
    let mut pending = Vec::new();
    // Pipelined: a request with a body, then one without, in one write.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 8\r\n\r\n{\"a\": 1}\
              GET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        )
        .await
        .unwrap();
    let echoed = read_answer(&mut stream, &mut pending).await;
    assert_eq!(
        (echoed.status, echoed.body.as_slice()),
        (200, &b"{\"a\":1}"[..])
    );
    let health = read_answer(&mut stream, &mut pending).await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    // A body in pieces.
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 8\r\n\r\n{\"a\"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b": 2}").await.unwrap();
    let echoed = read_answer(&mut stream, &mut pending).await;
    assert_eq!(echoed.body, b"{\"a\":2}");
    // Expect: 100-continue.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 8\r\n\r\n",
        )
        .await
        .unwrap();
    let go_on = read_answer(&mut stream, &mut pending).await;
    assert_eq!(go_on.status, 100);
    stream.write_all(b"{\"a\": 3}").await.unwrap();
    let echoed = read_answer(&mut stream, &mut pending).await;
    assert_eq!(echoed.body, b"{\"a\":3}");
    // HEAD: an answer without a body, and the connection is still good.
    stream
        .write_all(b"HEAD /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut head_only = [0u8; 512];
    let read = stream.read(&mut head_only).await.unwrap();
    assert!(head_only[..read].starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(head_only[..read].ends_with(b"\r\n\r\n"));
    stream.write_all(HEALTH).await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut pending).await.status, 200);
}

#[tokio::test]
async fn connections_the_client_or_the_request_ends_are_closed_after_the_answer() {
    let server = TestServer::start(limits(64)).await;
    // HTTP/1.0 without keep-alive, and HTTP/1.1 with Connection: close.
    for request in [
        &b"GET /health HTTP/1.0\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let (mut stream, answer) = ask(&server, request).await;
        assert_eq!(answer.status, 200);
        assert!(closes_within(&mut stream, Duration::from_millis(100)).await);
    }
    // A body the handler never reads and the client never finishes: the answer comes, then the
    // connection closes, rather than the rest of the body being read as a next request.
    let (mut stream, answer) = ask(
        &server,
        b"GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 50\r\n\r\nGET /health HTTP/1.1\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(closes_within(&mut stream, PATIENCE).await);
    // The router reads a body up to its 2 MiB limit before refusing it, so an oversized body
    // that never comes is cut by the body timeout, not waited for.
    let (mut stream, answer) = ask(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n{",
    )
    .await;
    assert_eq!(answer.status, 408);
    assert!(closes_within(&mut stream, PATIENCE).await);
}

#[tokio::test]
async fn a_graceful_shutdown_finishes_requests_in_progress() {
    let mut server = TestServer::start(limits(64)).await;
    let (mut idle, _) = ask(&server, HEALTH).await;
    let mut busy = server
        .send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    assert!(
        closes_within(&mut idle, Duration::from_millis(100)).await,
        "idle connections close at once"
    );
    assert!(
        TcpStream::connect(server.address).await.is_err(),
        "the listener is closed"
    );
    let answer = read_answer(&mut busy, &mut Vec::new()).await;
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"slow"[..]));
    assert_eq!(answer.header("connection"), Some("close"));
    let result = tokio::time::timeout(PATIENCE, &mut server.task)
        .await
        .expect("serve returns once the last request is answered");
    result.unwrap().unwrap();
    assert!(stopping.elapsed() < PATIENCE);
}
