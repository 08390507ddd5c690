#![allow(clippy::unwrap_used)]

use super::AmqpUrl;
use lapin::uri::{AMQPScheme, AMQPUri};

fn hosts(raw: &str) -> Vec<(String, String)> {
    let url = AmqpUrl::parse(raw).unwrap();
    url.hosts().iter().map(|h| (h.expose().to_owned(), h.endpoint().to_owned())).collect()
}

fn client_view(host_url: &str) -> AMQPUri {
    host_url.parse().unwrap()
}

#[test]
fn given_a_single_host_url_when_parsed_then_it_reaches_the_client_unchanged() {
    for raw in [
        "amqp://u:p@h:5672/vhost",
        "amqp://guest@localhost",
        "amqp://h",
        "amqp://h/",
        "amqp://h/%2f?heartbeat=5",
        "amqps://u:p@broker.example:5671/%2f",
    ] {
        let url = AmqpUrl::parse(raw).unwrap();
        assert_eq!(url.hosts().len(), 1, "{raw}");
        assert_eq!(url.hosts()[0].expose(), raw);
    }
    assert_eq!(hosts("amqp://h")[0].1, "h:5672");
    assert_eq!(hosts("amqps://h")[0].1, "h:5671");
    assert_eq!(hosts("amqp://u:p@[::1]:5673/")[0].1, "[::1]:5673");
}

#[test]
fn given_several_hosts_when_parsed_then_each_gets_the_shared_vhost_and_query() {
    let got = hosts("amqp://u1:p1@h1:5672,u2:p2@h2:5673,h3/vh?heartbeat=30&frame_max=8192");
    assert_eq!(
        got,
        vec![
            ("amqp://u1:p1@h1:5672/vh?heartbeat=30&frame_max=8192".into(), "h1:5672".into()),
            ("amqp://u2:p2@h2:5673/vh?heartbeat=30&frame_max=8192".into(), "h2:5673".into()),
            ("amqp://h3/vh?heartbeat=30&frame_max=8192".into(), "h3:5672".into()),
        ]
    );
    let second = client_view(&got[1].0);
    assert_eq!(second.authority.host, "h2");
    assert_eq!(second.authority.port, 5673);
    assert_eq!(second.authority.userinfo.username, "u2");
    assert_eq!(second.authority.userinfo.password, "p2");
    assert_eq!(second.vhost, "vh");
    assert_eq!(second.query.heartbeat, Some(30));
    // No path at all: every host gets the client's default virtual host.
    let got = hosts("amqp://a,b:5673");
    assert_eq!(got[1].0, "amqp://b:5673");
    assert_eq!(client_view(&got[1].0).vhost, "/");
}

#[test]
fn given_oslo_rabbit_scheme_when_parsed_then_it_is_plain_amqp() {
    let url = AmqpUrl::parse("rabbit://u:p@c1:5672,u:p@c2:5672,u:p@c3:5672/").unwrap();
    assert!(!url.is_tls());
    let urls: Vec<&str> = url.hosts().iter().map(|h| h.expose()).collect();
    assert_eq!(urls, ["amqp://u:p@c1:5672/", "amqp://u:p@c2:5672/", "amqp://u:p@c3:5672/"]);
    assert_eq!(client_view(urls[2]).scheme, AMQPScheme::AMQP);
    assert_eq!(url.to_string(), "rabbit://u:***@c1:5672,u:***@c2:5672,u:***@c3:5672/");
}

#[test]
fn given_amqps_hosts_when_parsed_then_every_host_is_tls_on_5671_by_default() {
    let url = AmqpUrl::parse("amqps://u:p@a,u:p@b:6000/%2f").unwrap();
    assert!(url.is_tls());
    let ends: Vec<&str> = url.hosts().iter().map(|h| h.endpoint()).collect();
    assert_eq!(ends, ["a:5671", "b:6000"]);
    let b = client_view(url.hosts()[1].expose());
    assert_eq!((b.scheme, b.vhost.as_str()), (AMQPScheme::AMQPS, "/"));
}

#[test]
fn given_percent_encoded_passwords_when_parsed_then_the_client_decodes_them() {
    // ',' '@' ':' '/' inside a password, percent-encoded as the form requires.
    let url = AmqpUrl::parse("amqp://dms:a%2Cb%40c%3Ad%2Fe@h1:5672,dms:x%25y@h2/vh").unwrap();
    let first = client_view(url.hosts()[0].expose());
    assert_eq!(first.authority.userinfo.password, "a,b@c:d/e");
    assert_eq!(first.authority.host, "h1");
    let second = client_view(url.hosts()[1].expose());
    assert_eq!(second.authority.userinfo.password, "x%y");
    assert_eq!(url.to_string(), "amqp://dms:***@h1:5672,dms:***@h2/vh");
}

#[test]
fn given_urls_when_displayed_then_no_password_is_shown() {
    let cases = [
        ("amqp://u:p@h:5672/vhost", "amqp://u:***@h:5672/vhost"),
        ("amqps://u:p:w@x@[::1]:5671", "amqps://u:***@[::1]:5671"),
        ("amqp://guest@localhost", "amqp://guest@localhost"),
        ("amqp://h", "amqp://h"),
        ("amqp://a:SECRET1@h1,b:SECRET2@h2?heartbeat=5", "amqp://a:***@h1,b:***@h2?heartbeat=5"),
    ];
    for (raw, shown) in cases {
        let url = AmqpUrl::parse(raw).unwrap();
        assert_eq!(url.to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("AmqpUrl({shown})"));
        let debug_hosts = format!("{:?}", url.hosts());
        assert!(!debug_hosts.contains("SECRET") && !debug_hosts.contains(":p@"), "{debug_hosts}");
    }
}

#[test]
fn given_malformed_urls_when_parsed_then_a_clear_error_names_the_entry_not_its_text() {
    let cases = [
        ("http://h", "must be an amqp://, amqps:// or rabbit:// URL"),
        ("rabbitmq://h", "must be an amqp://, amqps:// or rabbit:// URL"),
        ("h:5672", "must be an amqp://, amqps:// or rabbit:// URL"),
        ("amqp://h /", "must not contain whitespace or control characters"),
        ("amqp://", "host entry 1 is empty (stray comma?)"),
        ("amqp://u:pw1@h1,,u:pw1@h3/", "host entry 2 is empty (stray comma?)"),
        ("amqp://u:pw1@h1,/", "host entry 2 is empty (stray comma?)"),
        ("amqp://u:pw1@h1,u:pw1@:5672", "host entry 2 has no host"),
        ("amqp://u:pw1@", "host entry 1 has no host"),
        ("amqp://h:99999", "host entry 1 has an invalid port"),
        ("amqp://h1,h:0", "host entry 2 has an invalid port"),
        ("amqp://[::1", "host entry 1 has an unterminated IPv6 address"),
        ("amqp://u:pw1%zz@h", "host entry 1 has a '%' that is not followed by two hex digits"),
    ];
    for (raw, expected) in cases {
        let err = AmqpUrl::parse(raw).unwrap_err();
        assert!(err.starts_with(expected), "{raw}: {err}");
        assert!(!err.contains("pw1"), "{raw}: the error quotes the password: {err}");
    }
    // A '/' left raw in a password cuts the entry short; the rest is not a virtual host.
    let err = AmqpUrl::parse("amqp://u:pa/ss@h1,u:pa/ss@h2/").unwrap_err();
    assert!(err.contains("percent-encode"), "{err}");
    assert!(!err.contains("pa/ss"), "{err}");
}
