//! A fake controller for running the real `ferrite` binary against: a TCP listener on
//! loopback that records every request and answers from canned responses, plus a runner for
//! the binary with a clean environment.
//!
//! Unknown routes answer 404 with an `ApiCallRc`, as the controller does; the version
//! handshake answers like a LINSTOR 1.28 controller unless a test replaces it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// One request as the fake controller received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// The body, parsed; `None` when there was none.
    pub body: Option<Value>,
    pub headers: HashMap<String, String>,
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Wait this long before answering (to cross the client's timeout).
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: impl Into<String>) -> Canned {
        Canned {
            status,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

type Routes = Arc<Mutex<HashMap<(String, String), Canned>>>;

/// The version handshake's answer.
pub const VERSION: &str = r#"{"version":"1.31.0","git_hash":"0123456789abcdef0123456789abcdef01234567","build_time":"2026-11-24T16:00:00","rest_api_version":"1.28.0"}"#;

pub struct FakeController {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    routes: Routes,
}

impl FakeController {
    pub fn start() -> FakeController {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let fake = FakeController {
            address,
            requests: requests.clone(),
            routes: routes.clone(),
        };
        fake.on("GET", "/v1/controller/version", Canned::json(200, VERSION));
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let requests = requests.clone();
                let routes = routes.clone();
                thread::spawn(move || serve(stream, &requests, &routes));
            }
        });
        fake
    }

    /// `host:port` for `--controllers`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    pub fn on(&self, method: &str, path: &str, answer: Canned) {
        self.routes
            .lock()
            .unwrap()
            .insert((method.to_string(), path.to_string()), answer);
    }

    pub fn on_json(&self, method: &str, path: &str, status: u16, body: &str) {
        self.on(method, path, Canned::json(status, body));
    }

    /// Every request received, the version handshakes included.
    pub fn all_requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests after the version handshake.
    pub fn requests(&self) -> Vec<Recorded> {
        self.all_requests()
            .into_iter()
            .filter(|r| !(r.method == "GET" && r.path == "/v1/controller/version"))
            .collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Recorded>>, routes: &Routes) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = (!body.is_empty())
            .then(|| serde_json::from_slice(&body).expect("the client sends JSON bodies"));
        requests.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            body,
            headers,
        });
        let answer = routes
            .lock()
            .unwrap()
            .get(&(method.clone(), path.clone()))
            .cloned()
            .unwrap_or_else(|| {
                Canned::json(
                    404,
                    format!(
                        r#"[{{"ret_code":-4611686018427387903,"message":"There is no REST endpoint {method} {path}."}}]"#
                    ),
                )
            });
        thread::sleep(answer.delay);
        let response = format!(
            "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
            answer.status,
            answer.content_type,
            answer.body.len(),
            answer.body
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The binary with an environment that names no controller and no config file, in UTC.
pub fn ferrite_command(home: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("TZ", "UTC");
    command
}

/// Runs `ferrite --controllers ADDRESS ARGS...`.
pub fn ferrite(controller: &str, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    ferrite_command(home.path())
        .arg("--controllers")
        .arg(controller)
        .args(args)
        .output()
        .expect("run ferrite")
        .into()
}

/// An address where nothing listens: a port that was just free.
pub fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address.to_string()
}

/// The path of a file in this crate's `tests/data`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}
