//! A bare HTTP client for tests: status and JSON, nothing hidden.

use anyhow::{Result, bail};
use serde_json::Value;

/// An answer from the controller.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
}

impl Reply {
    /// The ApiCallRc entries, if the body is a list of them.
    pub fn entries(&self) -> Vec<&Value> {
        self.json
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    /// Whether any entry has the error mask.
    pub fn has_error(&self) -> bool {
        self.entries().iter().any(|e| {
            e["ret_code"]
                .as_i64()
                .is_some_and(|rc| (rc as u64) >> 62 == 3)
        })
    }

    /// Fails unless the status is 2xx and no entry is an error.
    pub fn expect_success(&self) -> Result<&Self> {
        if !(200..300).contains(&self.status) || self.has_error() {
            bail!("expected success, got {}: {}", self.status, self.json);
        }
        Ok(self)
    }
}

/// Idle connections a client (and its clones) keeps open for the next request. ureq keeps
/// three per host by default: of eight clones sending at once, five would open a connection
/// per request (and, with a timeout set, start a thread to resolve the address).
const IDLE_CONNECTIONS: usize = 64;

/// A client for one controller; its clones share its connections.
#[derive(Clone)]
pub struct Rest {
    base: String,
    agent: ureq::Agent,
}

impl Rest {
    /// A client whose every request gives up after 60 s.
    pub fn new(base: &str) -> Rest {
        Rest::with_timeout(base, std::time::Duration::from_secs(60))
    }

    /// A client whose every request gives up after `timeout`: a hung controller becomes an
    /// error instead of a stuck test.
    pub fn with_timeout(base: &str, timeout: std::time::Duration) -> Rest {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .build()
            .new_agent();
        Rest {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn finish(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
        let mut response = response?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply { status, json })
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        Self::finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn delete(&self, path: &str) -> Result<Reply> {
        Self::finish(self.agent.delete(format!("{}{path}", self.base)).call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Reply> {
        self.post_raw(path, &body.to_string())
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Reply> {
        self.put_raw(path, &body.to_string())
    }

    /// POST with a body sent as is, for malformed-input tests.
    pub fn post_raw(&self, path: &str, body: &str) -> Result<Reply> {
        Self::finish(self.agent.post(format!("{}{path}", self.base)).send(body))
    }

    pub fn put_raw(&self, path: &str, body: &str) -> Result<Reply> {
        Self::finish(self.agent.put(format!("{}{path}", self.base)).send(body))
    }
}
