//! DNS rebinding guard: every request must name this server in its `Host` (or
//! HTTP/2 `:authority`). A page on another site can point its own DNS name at this
//! server's address; its browser then sends `Host: <that name>` and treats our
//! answers as same-origin with the attacker's page, `Origin` check and all. So a
//! name is accepted only when it is ours: the `--listen` IP, loopback names for a
//! loopback or wildcard listener, `--allowed-host` values and the `--node-url`
//! host. A request to an IP literal is never a rebinding: a wildcard listener takes
//! any. Others get `421 Misdirected Request`.
//!
//! `/healthz` answers any `Host`: load balancers probe it with names of their own,
//! and it says nothing but `ok` (and the cluster's health).

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use super::AppState;
use crate::control::config::Config;

/// What a `Host` names: an IP literal or a DNS name (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Ip(IpAddr),
    Name(String),
}

/// The hosts this server answers to, from its flags.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    listen_ip: IpAddr,
    /// `localhost` and loopback IPs, any port: the listener is loopback or wildcard.
    loopback: bool,
    /// Any IP literal: a wildcard listener answers on every address.
    any_ip: bool,
    /// `--allowed-host` values and the `--node-url` host, with the port when one is named.
    named: Vec<(HostName, Option<u16>)>,
}

impl AllowedHosts {
    /// From `--listen`, `--allowed-host` (checked by [`check_flag`]) and the node's
    /// URL in a cluster.
    pub fn new(config: &Config, node_url: Option<&url::Url>) -> Self {
        let listen_ip = config.listen.ip();
        let mut named: Vec<(HostName, Option<u16>)> =
            config.allowed_host.iter().filter_map(|host| parse_authority(host)).collect();
        if let Some(host) = node_url.and_then(url::Url::host_str).and_then(parse_authority) {
            // Any port: a URL's default port is left out of the `Host` its clients send.
            named.push((host.0, None));
        }
        AllowedHosts {
            listen_ip,
            loopback: listen_ip.is_loopback() || listen_ip.is_unspecified(),
            any_ip: listen_ip.is_unspecified(),
            named,
        }
    }

    /// Whether a request whose `Host` is `authority` is meant for this server.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = parse_authority(authority) else {
            return false;
        };
        let ours = match &host {
            HostName::Ip(ip) => self.any_ip || *ip == self.listen_ip || (self.loopback && ip.is_loopback()),
            HostName::Name(name) => self.loopback && name == "localhost",
        };
        ours || self
            .named
            .iter()
            .any(|(name, only)| *name == host && only.is_none_or(|only| Some(only) == port))
    }
}

/// Checks one `--allowed-host` value: a host name or IP, with or without `:port`.
pub fn check_flag(value: &str) -> anyhow::Result<()> {
    match parse_authority(value) {
        Some(_) => Ok(()),
        None => anyhow::bail!("--allowed-host {value}: expected a host name or IP, optionally with :PORT"),
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, as in a `Host` header.
fn parse_authority(authority: &str) -> Option<(HostName, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, rest) = bracketed.split_once(']')?;
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':')?),
            };
            return Some((HostName::Ip(IpAddr::V6(v6.parse().ok()?)), parse_port(port)?));
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => HostName::Ip(ip),
        Err(_) => HostName::Name(host),
    };
    Some((name, parse_port(port)?))
}

/// `Some(None)` without a port, `Some(Some(port))` with a valid one, `None` otherwise.
fn parse_port(port: Option<&str>) -> Option<Option<u16>> {
    match port {
        None => Some(None),
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok().map(Some)
        }
        Some(_) => None,
    }
}

/// The middleware: requests that name another host get `421` before any handler
/// runs (and before a WebSocket upgrade). No `Host` at all (HTTP/1.0 tools) passes.
pub(super) async fn check_host(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let authority = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().to_owned()),
        None => {
            request.headers().get(header::HOST).map(|host| host.to_str().unwrap_or("(not text)").to_owned())
        }
    };
    if let Some(authority) = authority
        && !app.hosts.allows(&authority)
    {
        app.metrics.refused("misdirected_host");
        tracing::debug!(host = authority, "refused a request for another host");
        let message = format!(
            "this server does not answer to the host {authority}: start it with --allowed-host {authority} \
             if that name is really its own"
        );
        return (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({"error": "misdirected_host", "message": message})),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, allowed: &[&str], node_url: Option<&str>) -> AllowedHosts {
        let mut config = Config::new(listen.parse().unwrap());
        config.allowed_host = allowed.iter().map(|host| host.to_string()).collect();
        let node_url = node_url.map(|url| url::Url::parse(url).unwrap());
        AllowedHosts::new(&config, node_url.as_ref())
    }

    #[test]
    fn a_loopback_listener_answers_to_loopback_names_only() {
        let hosts = hosts("127.0.0.1:8080", &[], None);
        for ours in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "127.0.0.2:9",
            "localhost:8080",
            "LOCALHOST",
            "localhost.",
            "[::1]:8080",
        ] {
            assert!(hosts.allows(ours), "{ours}");
        }
        for theirs in [
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "10.0.0.1:8080",
            "",
            ":8080",
            "a b",
            "[::1",
            "127.0.0.1:x",
            "127.0.0.1:99999",
        ] {
            assert!(!hosts.allows(theirs), "{theirs}");
        }
    }

    #[test]
    fn a_wildcard_listener_answers_to_any_ip_but_only_its_own_names() {
        let hosts = hosts("0.0.0.0:8080", &["face.example", "other.example:9000"], None);
        for ours in [
            "192.0.2.7:8080",
            "[2001:db8::1]",
            "localhost",
            "face.example",
            "FACE.example:443",
            "other.example:9000",
        ] {
            assert!(hosts.allows(ours), "{ours}");
        }
        for theirs in
            ["attacker.example", "other.example", "other.example:8080", "face.example.attacker.example"]
        {
            assert!(!hosts.allows(theirs), "{theirs}");
        }
    }

    #[test]
    fn a_listener_on_one_address_answers_to_it_and_its_node_url() {
        let hosts = hosts("192.0.2.7:8080", &[], Some("https://node-a.example"));
        for ours in ["192.0.2.7", "192.0.2.7:8080", "node-a.example", "node-a.example:443"] {
            assert!(hosts.allows(ours), "{ours}");
        }
        for theirs in ["127.0.0.1", "localhost", "192.0.2.8", "node-b.example"] {
            assert!(!hosts.allows(theirs), "{theirs}");
        }
        assert!(check_flag("face.example:8443").is_ok() && check_flag("[::1]").is_ok());
        assert!(check_flag("https://face.example").is_err() && check_flag("face.example/x").is_err());
    }
}
