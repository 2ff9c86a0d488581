//! The connection to one controller: the version handshake that picks it, and the request
//! helpers every endpoint goes through.
//!
//! [`Client::connect`] asks each controller in turn for `GET /v1/controller/version` and keeps
//! the first that answers with a usable `rest_api_version`; only then is anything sent that
//! changes state, so a mutation is never sent twice to two controllers. After the handshake a
//! failed connection is reported, never retried elsewhere.

use std::fmt::Write as _;
use std::time::Duration;

use ferrite_types::ApiCallRc;
use ferrite_types::rest::ControllerVersion;
use serde::de::DeserializeOwned;

use crate::controllers::ControllerAddress;
use crate::error::{Answer, Attempt, ClientError, Listing};

/// How long to wait for a TCP connection before trying the next controller. Connecting to a
/// live controller takes milliseconds; a dead host that drops packets should not hold up the
/// next address for the whole request timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the version handshake may take before the next controller is tried. The version
/// call takes no locks and answers at once on a working controller; one that accepts the
/// connection but does not answer should not hold up the next address for the whole request
/// timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The request timeout when none is given: the `linstor` client's 300 s, long enough for a
/// mutation that waits for satellites.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A LINSTOR REST API version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ApiVersion {
    /// The oldest API this client talks to (python-linstor's minimum).
    pub const MINIMUM: ApiVersion = ApiVersion::new(1, 0, 4);
    /// From this version on, toggle-disk takes a JSON body on `…/toggle-disk`.
    pub const TOGGLE_DISK_BODY: ApiVersion = ApiVersion::new(1, 28, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> ApiVersion {
        ApiVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses `1.28.0`; a missing part is 0 and a suffix such as `-rc1` is ignored.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let mut parts = text.trim().splitn(3, '.').map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(ApiVersion::new(major, minor, patch))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// What the transport got back.
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

/// Why a request got no HTTP answer.
enum TransportError {
    Timeout,
    Failed(String),
}

/// A blocking client bound to the controller that answered the handshake.
pub struct Client {
    agent: ureq::Agent,
    controller: ControllerAddress,
    base: String,
    timeout: Duration,
    version: Listing<ControllerVersion>,
    api_version: ApiVersion,
}

impl Client {
    /// Tries `controllers` in order and returns a client for the first that answers the version
    /// handshake. `timeout` bounds every request.
    pub fn connect(
        controllers: &[ControllerAddress],
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
            // LINSTOR answers 302 on its plain port when it wants HTTPS; following it would
            // land on TLS, which this client does not speak.
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("ferrite/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut attempts = Vec::new();
        for controller in controllers {
            let mut client = Client {
                agent: agent.clone(),
                controller: controller.clone(),
                base: controller.base_url(),
                timeout,
                version: Listing {
                    items: ControllerVersion {
                        version: String::new(),
                        git_hash: None,
                        build_time: String::new(),
                        rest_api_version: String::new(),
                    },
                    raw: String::new(),
                },
                api_version: ApiVersion::MINIMUM,
            };
            match client.handshake() {
                Ok(()) => return Ok(client),
                Err(cause) => attempts.push(Attempt {
                    controller: controller.clone(),
                    cause,
                }),
            }
        }
        Err(ClientError::Unreachable { attempts })
    }

    /// `GET /v1/controller/version`, checked.
    fn handshake(&mut self) -> Result<(), String> {
        const PATH: &str = "/v1/controller/version";
        let limit = HANDSHAKE_TIMEOUT.min(self.timeout);
        let response = self
            .agent
            .get(format!("{}{PATH}", self.base))
            .config()
            .timeout_global(Some(limit))
            .build()
            .call();
        let reply = match response.map_err(transport_error).and_then(read_reply) {
            Ok(reply) => reply,
            Err(TransportError::Timeout) => {
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Err(TransportError::Failed(cause)) => return Err(cause),
        };
        if (300..400).contains(&reply.status) {
            return Err(format!(
                "answered HTTP status {} (a redirect, probably to HTTPS, which this client does not speak)",
                reply.status
            ));
        }
        if reply.status != 200 {
            return Err(format!(
                "answered GET {PATH} with HTTP status {}: {}",
                reply.status,
                summarize(&reply.body)
            ));
        }
        let version: ControllerVersion = serde_json::from_str(&reply.body).map_err(|e| {
            format!("is not a LINSTOR-compatible controller: GET {PATH} answered {e}")
        })?;
        let api_version = ApiVersion::parse(&version.rest_api_version).ok_or_else(|| {
            format!(
                "reports the unreadable REST API version '{}'",
                version.rest_api_version
            )
        })?;
        if api_version < ApiVersion::MINIMUM || api_version.major != 1 {
            return Err(format!(
                "speaks REST API {api_version}; this client needs 1.x from {} on",
                ApiVersion::MINIMUM
            ));
        }
        self.api_version = api_version;
        self.version = Listing {
            items: version,
            raw: reply.body,
        };
        Ok(())
    }

    /// The controller this client talks to.
    pub fn controller(&self) -> &ControllerAddress {
        &self.controller
    }

    /// What the controller answered to the version handshake.
    pub fn version(&self) -> &Listing<ControllerVersion> {
        &self.version
    }

    /// The controller's REST API version.
    pub fn api_version(&self) -> ApiVersion {
        self.api_version
    }

    fn transport(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
    ) -> Result<RawReply, TransportError> {
        let url = format!("{}{target}", self.base);
        let result = match (method, body) {
            (Method::Get, _) => self.agent.get(&url).call(),
            (Method::Delete, _) => self.agent.delete(&url).call(),
            (Method::Post, Some(body)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body),
            (Method::Post, None) => self.agent.post(&url).send_empty(),
            (Method::Put, Some(body)) => self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(body),
            (Method::Put, None) => self.agent.put(&url).send_empty(),
        };
        read_reply(result.map_err(transport_error)?)
    }

    /// Sends a request; transport failures become [`ClientError`]s.
    pub(crate) fn request(
        &self,
        method: Method,
        target: &str,
        body: Option<&str>,
    ) -> Result<RawReply, ClientError> {
        self.transport(method, target, body)
            .map_err(|error| match error {
                TransportError::Timeout => ClientError::Timeout {
                    controller: self.controller.clone(),
                    method: method.as_str(),
                    path: target.to_string(),
                    timeout: self.timeout,
                },
                TransportError::Failed(cause) => ClientError::ConnectionLost {
                    controller: self.controller.clone(),
                    method: method.as_str(),
                    path: target.to_string(),
                    cause,
                },
            })
    }

    /// A read: 2xx with a body of type `T`; a refusal with `ApiCallRc` entries becomes
    /// [`ClientError::Api`].
    pub(crate) fn read<T: DeserializeOwned>(
        &self,
        target: &str,
    ) -> Result<Listing<T>, ClientError> {
        self.query_with(Method::Get, target, None)
    }

    /// A query that takes a body (`POST …/query-size-info`): answered like a read.
    pub(crate) fn query_with<T: DeserializeOwned>(
        &self,
        method: Method,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Listing<T>, ClientError> {
        let body = body.map(serde_json::Value::to_string);
        let reply = self.request(method, target, body.as_deref())?;
        if (200..300).contains(&reply.status) {
            return match serde_json::from_str::<T>(&reply.body) {
                Ok(items) => Ok(Listing {
                    items,
                    raw: reply.body,
                }),
                Err(error) => Err(self.unexpected(
                    method,
                    target,
                    reply.status,
                    format!("the answer could not be read: {error}"),
                )),
            };
        }
        match serde_json::from_str::<Vec<ApiCallRc>>(&reply.body) {
            Ok(replies) if !replies.is_empty() => Err(ClientError::Api {
                method: method.as_str(),
                path: target.to_string(),
                answer: Answer {
                    status: reply.status,
                    replies,
                    raw: reply.body,
                },
            }),
            _ => Err(self.unexpected(method, target, reply.status, summarize(&reply.body))),
        }
    }

    /// A mutation: whatever the status, the body must be a list of `ApiCallRc` entries.
    pub(crate) fn act(
        &self,
        method: Method,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ClientError> {
        let body = body.map(serde_json::Value::to_string);
        let reply = self.request(method, target, body.as_deref())?;
        if (200..300).contains(&reply.status) && reply.body.trim().is_empty() {
            return Ok(Answer {
                status: reply.status,
                replies: Vec::new(),
                raw: "[]".to_string(),
            });
        }
        match serde_json::from_str::<Vec<ApiCallRc>>(&reply.body) {
            Ok(replies) => Ok(Answer {
                status: reply.status,
                replies,
                raw: reply.body,
            }),
            Err(error) => {
                let detail = if (200..300).contains(&reply.status) {
                    format!("the answer is not a list of ApiCallRc entries: {error}")
                } else {
                    summarize(&reply.body)
                };
                Err(self.unexpected(method, target, reply.status, detail))
            }
        }
    }

    pub(crate) fn unexpected(
        &self,
        method: Method,
        target: &str,
        status: u16,
        detail: String,
    ) -> ClientError {
        ClientError::UnexpectedReply {
            controller: self.controller.clone(),
            method: method.as_str(),
            path: target.to_string(),
            status,
            detail,
        }
    }
}

/// Status and whole body of a response (bodies are not size-limited: a view of thousands of
/// resources is large).
fn read_reply(mut response: ureq::http::Response<ureq::Body>) -> Result<RawReply, TransportError> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(transport_error)?;
    Ok(RawReply { status, body })
}

fn transport_error(error: ureq::Error) -> TransportError {
    match error {
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => TransportError::Timeout,
        ureq::Error::Io(io) => TransportError::Failed(io.to_string()),
        ureq::Error::HostNotFound => TransportError::Failed("host not found".to_string()),
        other => TransportError::Failed(other.to_string()),
    }
}

/// The start of a body for an error message.
fn summarize(body: &str) -> String {
    const LIMIT: usize = 200;
    let body = body.trim();
    if body.is_empty() {
        return "no data".to_string();
    }
    let mut text: String = body.chars().take(LIMIT).collect();
    if body.chars().count() > LIMIT {
        text.push('…');
    }
    text
}

/// Percent-encodes one path segment or query value, as python-linstor's `quote(x, safe="")`.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A query string of repeated keys (`?nodes=a&nodes=b`), empty when no value is given.
pub fn query(pairs: &[(&str, &[String])]) -> String {
    let mut out = String::new();
    for (key, values) in pairs {
        for value in values.iter() {
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(key);
            out.push('=');
            out.push_str(&encode(value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    /// A controller that answers each request with the next canned `(status, body)`.
    fn serve(answers: Vec<(u16, &'static str)>) -> ControllerAddress {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    reader.read_exact(&mut vec![0; length]).unwrap();
                    let Some((status, body)) = answers.next() else {
                        return;
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    writer.write_all(reply.as_bytes()).unwrap();
                }
            }
        });
        ControllerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    const VERSION: &str = r#"{"version":"0.1.0","build_time":"x","rest_api_version":"1.28.0"}"#;

    fn dead() -> ControllerAddress {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        ControllerAddress {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn unreachable_lists_every_controller_tried() {
        let (a, b) = (dead(), dead());
        let Err(ClientError::Unreachable { attempts }) =
            Client::connect(&[a.clone(), b.clone()], Duration::from_secs(5))
        else {
            panic!("connected to nothing");
        };
        let tried: Vec<_> = attempts.iter().map(|a| a.controller.clone()).collect();
        assert_eq!(tried, vec![a, b]);
        assert!(
            attempts[0].cause.contains("refused"),
            "{}",
            attempts[0].cause
        );
    }

    #[test]
    fn handshake_then_reads_and_mutations() {
        let controller = serve(vec![
            (200, VERSION),
            (200, "[]"),
            (
                404,
                r#"[{"ret_code":-4611686018427387604,"message":"Node 'x' not found."}]"#,
            ),
            (
                201,
                r#"[{"ret_code":20709377,"message":"New node 'n' registered."}]"#,
            ),
            (500, "<html>oops</html>"),
        ]);
        let client = Client::connect(&[dead(), controller], Duration::from_secs(5)).unwrap();
        assert_eq!(client.api_version(), ApiVersion::new(1, 28, 0));
        assert_eq!(client.version().items.version, "0.1.0");

        let nodes: Listing<Vec<serde_json::Value>> = client.read("/v1/nodes").unwrap();
        assert!(nodes.items.is_empty());
        assert_eq!(nodes.raw, "[]");

        let refused = client.read::<Vec<serde_json::Value>>("/v1/nodes/x");
        let Err(ClientError::Api { answer, .. }) = refused else {
            panic!("not refused: {refused:?}");
        };
        assert_eq!(answer.status, 404);
        assert!(answer.has_error());

        let created = client
            .act(Method::Post, "/v1/nodes", Some(&serde_json::json!({})))
            .unwrap();
        assert_eq!(created.status, 201);
        assert!(!created.has_error());
        assert_eq!(created.replies[0].message, "New node 'n' registered.");

        let broken = client.act(Method::Delete, "/v1/nodes/n", None);
        assert!(
            matches!(
                broken,
                Err(ClientError::UnexpectedReply { status: 500, .. })
            ),
            "{broken:?}"
        );
    }

    #[test]
    fn a_server_without_rest_api_version_is_not_a_controller() {
        let not_linstor = serve(vec![(200, r#"{"hello":"world"}"#)]);
        let Err(ClientError::Unreachable { attempts }) =
            Client::connect(&[not_linstor], Duration::from_secs(5))
        else {
            panic!("accepted");
        };
        assert!(
            attempts[0]
                .cause
                .contains("not a LINSTOR-compatible controller"),
            "{}",
            attempts[0].cause
        );
    }

    #[test]
    fn api_versions() {
        assert_eq!(ApiVersion::parse("1.28.0"), Some(ApiVersion::new(1, 28, 0)));
        assert_eq!(ApiVersion::parse("1.2"), Some(ApiVersion::new(1, 2, 0)));
        assert_eq!(
            ApiVersion::parse("1.28.0-rc1"),
            Some(ApiVersion::new(1, 28, 0))
        );
        assert_eq!(ApiVersion::parse(""), None);
        assert_eq!(ApiVersion::parse("x.1"), None);
        assert!(ApiVersion::parse("1.0.3").unwrap() < ApiVersion::MINIMUM);
        assert!(ApiVersion::parse("1.27.9").unwrap() < ApiVersion::TOGGLE_DISK_BODY);
        assert_eq!(ApiVersion::new(1, 28, 0).to_string(), "1.28.0");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("my_ssd-res.1~"), "my_ssd-res.1~");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("Aux/rack=r1"), "Aux%2Frack%3Dr1");
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[
                ("nodes", &["a".to_string(), "b".to_string()]),
                ("props", &[])
            ]),
            "?nodes=a&nodes=b"
        );
    }

    #[test]
    fn summaries_are_short() {
        assert_eq!(summarize("  "), "no data");
        assert_eq!(summarize("<html>"), "<html>");
        assert_eq!(summarize(&"x".repeat(500)).chars().count(), 201);
    }
}
