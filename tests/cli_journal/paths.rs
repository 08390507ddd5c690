//! Which journal the tool opens, and what it does when it cannot.

use super::*;

const LOCKED: &str = "is in use by another process (is dms-server running?) and the admin \
                      socket at /nonexistent/dms-test/admin.sock (from DMS_ADMIN_SOCKET) cannot \
                      answer for it: there is no socket there";

fn config(dir: &Path, name: &str, journal: &Path) -> PathBuf {
    let file = dir.join(name);
    let text = format!(
        "# written by the test\n[server]\nnode_id = compute-01\njournal_path = {}\n",
        journal.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn given_a_locked_journal_and_no_admin_socket_when_inspecting_then_exit_2_naming_both() {
    let f = Fixture::standard();
    let path = f.path();
    for command in ["inspect", "verify", "export"] {
        let o = on(&path, &[command]);
        assert_eq!(o.status.code(), Some(2), "{command}");
        assert_eq!(
            stderr(&o),
            format!("dms-journal: the journal at {} {LOCKED}\n", path.display())
        );
        assert!(o.stdout.is_empty());
    }
    drop(f);
}

#[test]
fn given_dms_journal_path_when_no_flag_then_that_journal_is_inspected() {
    let (_dir, path) = Fixture::standard().close();
    let o = run_env(&["inspect", "--summary"], &[("DMS_JOURNAL_PATH", &path)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected::SUMMARY);
    let o = run_env(&["inspect", "--json", "--summary"], &[("DMS_JOURNAL_PATH", &path)]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["journal"]["source"], "from DMS_JOURNAL_PATH");
}

#[test]
fn given_dms_config_naming_the_journal_when_no_flag_then_that_journal_is_inspected() {
    let (dir, path) = Fixture::standard().close();
    let conf = config(dir.path(), "server.conf", &path);
    let o = run_env(&["inspect", "--summary", "--json"], &[("DMS_CONFIG", &conf)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["journal"]["path"], path.to_str().unwrap());
    assert_eq!(doc["journal"]["source"], format!("from journal_path in {}", conf.display()));
    assert_eq!(doc["summary"]["records"], 20);
}

#[test]
fn given_several_sources_when_resolving_then_flag_env_and_config_take_precedence_in_order() {
    let (dir, path) = Fixture::standard().close();
    let missing = dir.path().join("missing");
    let bad_conf = config(dir.path(), "bad.conf", &missing);
    let good_conf = config(dir.path(), "good.conf", &path);
    let conf = good_conf.to_str().unwrap();
    // --config beats $DMS_CONFIG.
    let o = run_env(&["--config", conf, "inspect", "--summary"], &[("DMS_CONFIG", &bad_conf)]);
    assert_eq!(stdout(&o), expected::SUMMARY, "{}", stderr(&o));
    // $DMS_JOURNAL_PATH beats any config file.
    let env = [("DMS_CONFIG", bad_conf.as_path()), ("DMS_JOURNAL_PATH", path.as_path())];
    let o = run_env(&["inspect", "--summary"], &env);
    assert_eq!(stdout(&o), expected::SUMMARY, "{}", stderr(&o));
    // --path beats $DMS_JOURNAL_PATH.
    let o = run_env(
        &["--path", path.to_str().unwrap(), "inspect", "--summary"],
        &[("DMS_JOURNAL_PATH", &missing)],
    );
    assert_eq!(stdout(&o), expected::SUMMARY, "{}", stderr(&o));
}

#[test]
fn given_a_configured_path_that_does_not_exist_when_inspecting_then_exit_1_naming_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("journal");
    let conf = config(dir.path(), "server.conf", &missing);
    for command in ["inspect", "verify", "export"] {
        let o = run_env(&[command], &[("DMS_CONFIG", &conf)]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stderr(&o),
            format!(
                "dms-journal: no journal at {} (from journal_path in {}): it does not exist\n",
                missing.display(),
                conf.display()
            )
        );
        assert!(!missing.exists(), "{command} created a journal");
    }
}

#[test]
fn given_an_empty_directory_when_inspecting_then_exit_1_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let o = on(dir.path(), &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "dms-journal: no journal at {} (from --path): it is an empty directory, not a journal\n",
            dir.path().display()
        )
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn given_a_named_config_file_that_is_missing_when_inspecting_then_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nope.conf");
    let o = run(&["--config", conf.to_str().unwrap(), "inspect"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let expected =
        format!("dms-journal: cannot read the config file {} (--config): ", conf.display());
    assert!(err.starts_with(&expected), "{err}");
}

#[test]
fn given_a_bad_command_line_when_parsing_then_exit_64_and_help_exits_0() {
    let o = run(&["inspect", "--bogus"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("--bogus"));
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    for needle in ["DMS_JOURNAL_PATH", "DMS_CONFIG", "journal_path", "/var/lib/dms/journal"] {
        assert!(help.contains(needle), "{needle} missing from --help:\n{help}");
    }
}
