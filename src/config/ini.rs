//! The `[server]` section of an INI file, read the way Python's `configparser` reads the
//! seed's `server.conf` (so existing files keep working), minus the features that would
//! make a value mean something other than what the line shows.
//!
//! Accepted: `[section]` headers, `key = value` and `key: value` (first delimiter wins,
//! keys are case-insensitive), full-line `#` and `;` comments, blank lines, a UTF-8 BOM.
//! Not accepted (reported with file:line rather than guessed at): continuation lines,
//! repeated keys, lines that are none of the above. No inline comments: `#` and `;` may
//! be part of a password in `rabbitmq_url`. Sections other than `[server]` are skipped.

use std::collections::BTreeMap;

/// One `key = value` line of the `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub value: String,
    pub line: usize,
}

/// What the file said, and every line it could not make sense of (line, message).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Parsed {
    pub entries: BTreeMap<String, Entry>,
    pub errors: Vec<(usize, String)>,
}

pub(super) const SECTION: &str = "server";

pub(super) fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut section: Option<String> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with(char::is_whitespace) {
            parsed
                .errors
                .push((line, "indented line: continuation lines are not supported".into()));
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            match header.strip_suffix(']') {
                Some(name) => section = Some(name.trim().to_owned()),
                None => parsed.errors.push((line, "section header without ']'".into())),
            }
            continue;
        }
        let Some(at) = trimmed.find(['=', ':']) else {
            parsed.errors.push((line, "expected 'key = value'".into()));
            continue;
        };
        if section.as_deref() != Some(SECTION) {
            if section.is_none() {
                parsed.errors.push((line, "key outside of any section (expected [server])".into()));
            }
            continue;
        }
        let key = trimmed[..at].trim().to_ascii_lowercase();
        let value = trimmed[at + 1..].trim().to_owned();
        if key.is_empty() {
            parsed.errors.push((line, "empty key".into()));
        } else if let Some(first) = parsed.entries.get(&key) {
            parsed.errors.push((line, format!("'{key}' is already set on line {}", first.line)));
        } else {
            parsed.entries.insert(key, Entry { value, line });
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_the_seed_file_when_parsed_then_every_key_is_read_with_its_line() {
        let text =
            "\u{feff}[server]\n# RabbitMQ connection\nrabbitmq_url = amqp://u:p#;w@h:5672/\n\n\
                    Node_ID: compute-01\nlog_level=INFO\n[client]\nrabbitmq_url = other\n";
        let parsed = parse(text);
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(
            parsed.entries.get("rabbitmq_url").unwrap(),
            &Entry { value: "amqp://u:p#;w@h:5672/".into(), line: 3 }
        );
        assert_eq!(
            parsed.entries.get("node_id").unwrap(),
            &Entry { value: "compute-01".into(), line: 5 }
        );
        assert_eq!(parsed.entries.get("log_level").unwrap().value, "INFO");
        assert_eq!(parsed.entries.len(), 3, "[client] is not read");
    }

    #[test]
    fn given_malformed_lines_when_parsed_then_each_is_reported_with_its_line() {
        let text =
            "orphan = 1\n[server\n[server]\nnode_id = a\nnode_id = b\n  continued\njunk\n= x\n";
        let parsed = parse(text);
        assert_eq!(
            parsed.errors,
            vec![
                (1, "key outside of any section (expected [server])".to_owned()),
                (2, "section header without ']'".to_owned()),
                (5, "'node_id' is already set on line 4".to_owned()),
                (6, "indented line: continuation lines are not supported".to_owned()),
                (7, "expected 'key = value'".to_owned()),
                (8, "empty key".to_owned()),
            ]
        );
        assert_eq!(parsed.entries.get("node_id").unwrap().value, "a", "the first value stays");
    }

    #[test]
    fn given_an_empty_value_when_parsed_then_it_is_kept_as_empty() {
        let parsed = parse("[server]\nauth_url =\n");
        assert_eq!(parsed.entries.get("auth_url").unwrap().value, "");
    }
}
