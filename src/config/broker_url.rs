//! `rabbitmq_url` in oslo.messaging's `transport_url` form: one broker, or a cluster given
//! as comma-separated `user:pass@host:port` entries sharing one virtual host and query:
//!
//! ```text
//! rabbit://u:p@ctrl1:5672,u:p@ctrl2:5672,u:p@ctrl3:5672/vhost?heartbeat=30
//! ```
//!
//! Every OpenStack service of a deployment is given its brokers this way, so the operator
//! can paste the same value. The URL is split here, once, into one plain AMQP URL per host
//! (`rabbit://` is read as `amqp://`, as oslo.messaging does); the transport tries them in
//! turn. A single-host URL becomes exactly itself, so it reaches the AMQP client unchanged.
//!
//! Characters that would end an entry (`,` `@` `/` `?` `#` and `:` in a user name) must be
//! percent-encoded in user names and passwords (`%2C`, `%40`, `%2F`, ...); the AMQP client
//! decodes them. No message of this module quotes an entry, so a password can never reach
//! a log line or `--check-config` through a parse error: entries are named by position.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// The AMQP port when an entry names none.
const AMQP_PORT: u16 = 5672;
const AMQPS_PORT: u16 = 5671;

/// The broker URL as configured: every host, each with its credentials. `Display` and
/// `Debug` show every password as `***`.
#[derive(Clone)]
pub struct AmqpUrl {
    raw: SecretString,
    /// The URL with every password replaced by `***` (computed once; holds no secret).
    shown: String,
    hosts: Vec<HostUrl>,
    tls: bool,
}

/// One host of [`AmqpUrl`] as a complete single-host AMQP URL (the shared virtual host and
/// query included), ready for the AMQP client.
#[derive(Clone)]
pub struct HostUrl {
    url: SecretString,
    endpoint: String,
}

impl AmqpUrl {
    /// Split `raw` into its hosts. The error is the message of one configuration problem.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain whitespace or control characters".into());
        }
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err(SCHEMES.into());
        };
        let (scheme, tls) = match scheme {
            "amqp" | "rabbit" => ("amqp", false),
            "amqps" => ("amqps", true),
            _ => return Err(SCHEMES.into()),
        };
        // The hosts end at the first '/' (the virtual host) or '?' (the query).
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains('@') {
            return Err("has '@' after the hosts: percent-encode '/', '?' and '#' in user names \
                        and passwords (%2F, %3F, %23), and '@' in the virtual host (%40)"
                .into());
        }
        let mut hosts = Vec::new();
        let mut shown = Vec::new();
        for (i, entry) in authority.split(',').enumerate() {
            let n = i + 1;
            let parsed = Entry::parse(entry).map_err(|why| format!("host entry {n} {why}"))?;
            let default_port = if tls { AMQPS_PORT } else { AMQP_PORT };
            let endpoint = parsed.endpoint(default_port);
            let url = format!("{scheme}://{entry}{tail}");
            // What the AMQP client will be handed must be what it accepts; its own message
            // could quote the URL, so it is not repeated.
            if url.parse::<lapin::uri::AMQPUri>().is_err() {
                return Err(format!("host entry {n} does not make a valid AMQP URL"));
            }
            shown.push(parsed.redacted());
            hosts.push(HostUrl { url: SecretString::from(url), endpoint });
        }
        let shown = format!("{}://{}{tail}", raw_scheme(raw), shown.join(","));
        Ok(Self { raw: SecretString::from(raw), shown, hosts, tls })
    }

    /// Every host, in the order written.
    pub fn hosts(&self) -> &[HostUrl] {
        &self.hosts
    }

    /// `amqps://`: every host is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

const SCHEMES: &str = "must be an amqp://, amqps:// or rabbit:// URL";

fn raw_scheme(raw: &str) -> &str {
    raw.split_once("://").map_or("", |(scheme, _)| scheme)
}

impl HostUrl {
    /// The URL with its password, for the broker connection only.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// `host:port` (the port defaulted by the scheme), what status and logs name the host by.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl fmt::Debug for HostUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostUrl({})", self.endpoint)
    }
}

/// One `user:pass@host:port` entry, borrowed from the raw URL.
struct Entry<'a> {
    user: Option<&'a str>,
    has_password: bool,
    host: &'a str,
    port: Option<u16>,
    /// The host was written in brackets (an IPv6 address).
    bracketed: bool,
}

impl<'a> Entry<'a> {
    fn parse(entry: &'a str) -> Result<Self, &'static str> {
        if entry.is_empty() {
            return Err("is empty (stray comma?)");
        }
        // The last '@' ends the user info: a password may hold a bare '@'.
        let (userinfo, host_port) = match entry.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, entry),
        };
        if let Some(userinfo) = userinfo {
            if !percent_encoding_is_valid(userinfo) {
                return Err("has a '%' that is not followed by two hex digits in its user info");
            }
        }
        let (user, has_password) = match userinfo.map(|u| u.split_once(':')) {
            Some(Some((user, _))) => (Some(user), true),
            Some(None) => (userinfo, false),
            None => (None, false),
        };
        let (host, port, bracketed) = match host_port.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, None, true),
                Some((host, port)) => match port.strip_prefix(':') {
                    Some(port) => (host, Some(port), true),
                    None => return Err("has text after its IPv6 address"),
                },
                None => return Err("has an unterminated IPv6 address"),
            },
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port), false),
                None => (host_port, None, false),
            },
        };
        if host.is_empty() {
            return Err("has no host");
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err("has an invalid port"),
            },
            None => None,
        };
        Ok(Self { user, has_password, host, port, bracketed })
    }

    fn endpoint(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.bracketed {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The entry as written, its password (if any) replaced by `***`.
    fn redacted(&self) -> String {
        let mut out = String::new();
        if let Some(user) = self.user {
            out.push_str(user);
            if self.has_password {
                out.push_str(":***");
            }
            out.push('@');
        }
        if self.bracketed {
            out.push_str(&format!("[{}]", self.host));
        } else {
            out.push_str(self.host);
        }
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        out
    }
}

/// Every `%` starts a `%XX` escape.
fn percent_encoding_is_valid(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

impl PartialEq for AmqpUrl {
    fn eq(&self, other: &Self) -> bool {
        self.raw.expose_secret() == other.raw.expose_secret()
    }
}

impl Eq for AmqpUrl {}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

#[cfg(test)]
#[path = "broker_url_tests.rs"]
mod tests;
