//! inspect, verify and export on the standard fixture.

use super::*;
use dms_journal::{Event, Record};

fn assert_text(actual: &str, expected: &str) {
    assert!(actual == expected, "--- actual\n{actual}--- expected\n{expected}---");
}

#[test]
fn given_the_fixture_when_inspecting_then_one_row_per_target_and_a_summary() {
    let (_dir, path) = Fixture::standard().close();
    assert_text(&ok(&path, &["inspect"]), expected::OVERVIEW);
    assert_text(&ok(&path, &["inspect", "--summary"]), expected::SUMMARY);
}

#[test]
fn given_a_mounted_s3_target_when_inspecting_it_then_the_full_chain_is_shown() {
    let (_dir, path) = Fixture::standard().close();
    assert_text(&ok(&path, &["inspect", "--target", "s3-alpha"]), expected::ALPHA);
}

#[test]
fn given_a_failed_target_when_inspecting_it_then_the_reason_is_shown() {
    let (_dir, path) = Fixture::standard().close();
    assert_text(&ok(&path, &["inspect", "--target", "s3-gamma"]), expected::GAMMA);
}

#[test]
fn given_an_unmounted_target_when_inspecting_it_then_both_chains_are_shown() {
    let (_dir, path) = Fixture::standard().close();
    assert_text(&ok(&path, &["inspect", "--target", "s3-delta"]), expected::DELTA);
}

#[test]
fn given_a_dirty_target_when_inspecting_it_then_what_to_clean_is_shown() {
    let (_dir, path) = Fixture::standard().close();
    let out = ok(&path, &["inspect", "--target", "s3-dirty"]);
    assert!(out.contains(
        "Failed        req-dirty-1  a0000007  uncertain (stop helper pid 4444, detach mount, \
         remove PID file): Mount verification failed: no mount after 30s\n"
    ));
    assert!(
        out.contains("  state       dirty (stop helper pid 4444, detach mount, remove PID file)\n")
    );
}

#[test]
fn given_request_keys_when_inspecting_them_then_target_outcome_and_records_are_shown() {
    let (_dir, path) = Fixture::standard().close();
    assert_text(&ok(&path, &["inspect", "--request", "req-gamma-1"]), expected::REQUEST_GAMMA);
    assert_text(&ok(&path, &["inspect", "--request", "req-alpha-2"]), expected::REQUEST_ALPHA_2);
}

#[test]
fn given_unknown_names_when_inspecting_then_a_clear_message_and_exit_1() {
    let (_dir, path) = Fixture::standard().close();
    let p = path.display();
    for (args, message) in [
        (&["inspect", "--target", "nope"][..], format!("no target nope in the journal at {p}")),
        (&["inspect", "--request", "nope"], format!("no request nope in the journal at {p}")),
        (
            &["inspect", "--target", "../etc"],
            "invalid target id: target id must not start with '.'".to_owned(),
        ),
    ] {
        let o = on(&path, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o), format!("dms-journal: {message}\n"));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn given_json_when_inspecting_then_every_form_parses_with_its_fields() {
    let (_dir, path) = Fixture::standard().close();
    let all = json(&path, &["inspect", "--json"]);
    assert_eq!(all["summary"]["targets"], 5);
    assert_eq!(all["summary"]["records"], 20);
    assert_eq!(all["summary"]["dirty"], 1);
    assert_eq!(all["journal"]["source"], "from --path");
    let targets = all["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(names, ["nfs-beta", "s3-alpha", "s3-delta", "s3-dirty", "s3-gamma"]);
    let alpha = &targets[1];
    assert_eq!(alpha["phase"], "mounted");
    assert_eq!(alpha["kind"], "s3");
    assert_eq!(alpha["helper"]["pid"], 4242);
    assert_eq!(alpha["last_event"], "Answered");
    assert_eq!(alpha["last_seq"], 5);
    assert_eq!(alpha["updated"], "2026-01-01T00:01:00.000Z");
    assert_eq!(targets[3]["phase"], "dirty");

    let summary = json(&path, &["inspect", "--summary", "--json"]);
    assert!(summary.get("targets").is_none());
    assert_eq!(summary["summary"]["mounted"], 2);

    let history = json(&path, &["inspect", "--target", "s3-alpha", "--json"]);
    let records = history["records"].as_array().unwrap();
    assert_eq!(records.len(), 5);
    let first = &records[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["boot"], "3f1b2c4d-1111-4222-8333-944455556666");
    assert_eq!(first["request"], "req-alpha-1");
    assert_eq!(first["op"], op(1).to_string());
    assert_eq!(first["at"], T0);
    assert!(first["event"]["Requested"]["spec"]["mount_path"].is_string());
    assert_eq!(records[1]["event"], "CredsFetched");
    assert!(history["snapshot"].is_null());
    assert_eq!(history["current"]["state"], "mounted");
    assert_eq!(
        history["requests"][1]["text"],
        "already mounted at /var/lib/trilio/triliovault-mounts/s3-alpha"
    );

    let request = json(&path, &["inspect", "--request", "req-delta-2", "--json"]);
    assert_eq!(request["target"], "s3-delta");
    assert_eq!(request["status"], "answered");
    assert_eq!(request["answer"]["outcome"]["Unmounted"]["path"], format!("{BASE}/s3-delta"));
    assert_eq!(request["records"].as_array().unwrap().len(), 3);
}

#[test]
fn given_the_fixture_when_verifying_then_ok_and_exit_0() {
    let (_dir, path) = Fixture::standard().close();
    assert_eq!(ok(&path, &["verify"]), "ok: 20 records, 5 targets\n");
}

#[test]
fn given_a_corrupt_record_when_verifying_then_it_is_named_and_exit_1() {
    let f = Fixture::standard();
    f.journal.write_raw_for_tests(&tid("s3-alpha"), 3, b"garbage").unwrap();
    let (_dir, path) = f.close();
    let o = on(&path, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "target s3-alpha seq 3: corrupt: value is 7 bytes, shorter than the 16-byte envelope \
         header; 2 later record(s) of this target not replayed\n\
         verify: 1 problem in 19 records, 5 targets\n"
    );
    // inspect still works, shows the damage in place and points at verify.
    let out = ok(&path, &["inspect", "--target", "s3-alpha"]);
    assert!(out.contains("\n3    -                         -         CORRUPT       -            -         value is 7 bytes"), "{out}");
    // The summary counts records replayed: the two after the damage are not.
    let all = ok(&path, &["inspect"]);
    assert!(all.ends_with("; 17 records; 1 problem (run dms-journal verify)\n"), "{all}");
}

#[test]
fn given_an_illegal_transition_when_verifying_then_it_is_named_and_exit_1() {
    let f = Fixture::standard();
    let bogus = Record {
        target: tid("s3-gamma"),
        at: Timestamp(T0 + 900_000),
        boot: boot(),
        request: None,
        op: None,
        event: Event::Verified,
    };
    assert_eq!(f.journal.append(&[bogus]).unwrap(), vec![21]);
    let (_dir, path) = f.close();
    let o = on(&path, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "target s3-gamma seq 21: illegal: Verified is not legal while s3-gamma is unmounted\n\
         verify: 1 problem in 21 records, 5 targets\n"
    );
    let out = ok(&path, &["inspect", "--target", "s3-gamma"]);
    assert!(
        out.contains("  [ILLEGAL: Verified is not legal while s3-gamma is unmounted]\n"),
        "{out}"
    );
}

#[test]
fn given_the_fixture_when_exporting_then_one_json_line_per_record() {
    let (_dir, path) = Fixture::standard().close();
    let out = ok(&path, &["export"]);
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 20);
    let mut seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    for line in &lines {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7, "{line}");
        for k in ["seq", "target", "at", "boot", "request", "op", "event"] {
            assert!(line.get(k).is_some(), "{k} missing in {line}");
        }
    }
    assert_eq!(lines[0]["target"], "nfs-beta");
    assert_eq!(
        lines[0]["event"]["Requested"]["spec"]["kind"]["Nfs"]["export"],
        "10.0.0.5:/exports/backup"
    );
}

#[test]
fn given_a_corrupt_record_when_exporting_then_the_rest_is_exported_and_exit_1() {
    let f = Fixture::standard();
    f.journal.write_raw_for_tests(&tid("s3-delta"), 12, b"\0\0\0\0").unwrap();
    let (_dir, path) = f.close();
    let o = on(&path, &["export"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count(), 19);
    let err = stderr(&o);
    assert!(err.starts_with("dms-journal: target s3-delta seq 12: corrupt: "), "{err}");
    assert!(err.ends_with("dms-journal: 1 record could not be exported (see above)\n"), "{err}");
}

#[test]
fn given_a_compacted_history_when_inspecting_then_the_snapshot_is_noted() {
    let f = Fixture::standard();
    let report = f.journal.compact(Timestamp(T0 + 350_000), 0).unwrap();
    assert_eq!(report.records_removed, 13);
    let (_dir, path) = f.close();
    assert_text(&ok(&path, &["inspect", "--target", "s3-delta"]), expected::DELTA_COMPACTED);
    let all = ok(&path, &["inspect"]);
    assert!(all.contains("\ns3-alpha  mounted  "), "{all}");
    assert!(all.ends_with("; 7 records; no problems\n"), "{all}");
    let history = json(&path, &["inspect", "--target", "s3-delta", "--json"]);
    assert_eq!(history["snapshot"]["seq"], 13);
    assert_eq!(history["snapshot"]["records"], 4);
    assert_eq!(ok(&path, &["verify"]), "ok: 7 records, 5 targets\n");
}

#[test]
fn given_a_mount_in_flight_when_inspecting_its_request_then_it_is_in_flight() {
    let mut f = Fixture::empty();
    let o = op(9);
    f.step(
        "s3-busy",
        0,
        Command::Mount {
            op: o,
            request: key("req-busy"),
            spec: s3("s3-busy"),
            nested: None,
            outage: None,
        },
    );
    let nonce = SpawnNonce::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    f.step("s3-busy", 1, Command::CredsFetched { op: o, result: Ok(()), nonce });
    let (_dir, path) = f.close();
    assert_eq!(
        ok(&path, &["inspect", "--summary"]),
        "1 target: 0 mounted, 0 unmounted, 1 in flight, 0 dirty; 3 records; no problems\n"
    );
    // The spawn intent is shown, its nonce (the helper's proof of origin) never is.
    let history = ok(&path, &["inspect", "--target", "s3-busy"]);
    assert!(history.contains("SpawnIntended"), "{history}");
    assert!(history.contains("nonce set in the helper's environment"), "{history}");
    let as_json = ok(&path, &["inspect", "--target", "s3-busy", "--json"]);
    let exported = ok(&path, &["export"]);
    for shown in [&history, &as_json, &exported] {
        assert!(!shown.contains("0123456789abcdef"), "the nonce was shown:\n{shown}");
        assert!(!shown.contains("01234567-89ab"), "the nonce was shown:\n{shown}");
    }
    assert!(as_json.contains("<redacted>"), "{as_json}");
    let out = ok(&path, &["inspect", "--request", "req-busy"]);
    assert!(
        out.contains(&format!(
            "  outcome  in flight since 2026-01-01T00:00:00.000Z (op {})\n",
            op(9)
        )),
        "{out}"
    );
    let request = json(&path, &["inspect", "--request", "req-busy", "--json"]);
    assert_eq!(request["status"], "in_flight");
    assert!(request["answer"].is_null());
    let all = json(&path, &["inspect", "--json"]);
    let busy = &all["targets"][0];
    assert_eq!(busy["state"], "mounting (SpawnIntended)");
    assert_eq!(busy["operation"]["action"], "mount");
    assert_eq!(busy["operation"]["request"], "req-busy");
    assert_eq!(busy["operation"]["started_at"], T0);
}

#[test]
fn given_inspect_json_when_parsed_then_a_target_has_exactly_the_documented_fields() {
    let (_dir, path) = Fixture::standard().close();
    let all = json(&path, &["inspect", "--json"]);
    let mut keys: Vec<&str> =
        all["targets"][0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut documented = [
        "target",
        "state",
        "phase",
        "kind",
        "mount_path",
        "helper",
        "operation",
        "last_event",
        "last_seq",
        "updated_at",
        "updated",
        "records",
    ];
    documented.sort_unstable();
    assert_eq!(keys, documented);
    let mut top: Vec<&str> = all.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["journal", "problems", "summary", "targets"]);
}
