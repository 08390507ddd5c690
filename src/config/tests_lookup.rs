//! [`lookup_path`]: the rules `dms-journal` relies on to find the daemon's journal and
//! admin socket, and that it finds what [`Config::load`] finds.

#![allow(clippy::unwrap_used)]

use super::*;
use std::path::Path;

const URL: &str = "amqp://dms_user:s3cr3t-pw@rabbitmq-host:5672/";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Sources with `file` as `--config` (if any) and a default location that is not there.
fn sources<'a>(file: Option<&Path>, env: &'a BTreeMap<String, String>) -> Sources<'a> {
    Sources {
        config_path: file.map(Into::into),
        env,
        default_config_path: PathBuf::from("/nonexistent/dms-test/server.conf"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn journal(s: &Sources<'_>) -> Result<(PathBuf, Origin), LookupError> {
    lookup_path(s, PathKey::JournalPath)
}

fn at(path: &Path, line: usize) -> Origin {
    Origin::File { path: path.to_path_buf(), line: Some(line) }
}

#[test]
fn given_every_source_when_looked_up_then_env_beats_file_beats_default_for_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf =
        write(dir.path(), "server.conf", "[server]\njournal_path = /f/j\nadmin_socket = /f/s\n");
    let none = env(&[]);
    let s = sources(None, &none);
    assert_eq!(journal(&s).unwrap(), ("/var/lib/dms/journal".into(), Origin::Default));
    let socket = lookup_path(&s, PathKey::AdminSocket).unwrap();
    assert_eq!(socket, ("/run/dms/admin.sock".into(), Origin::Default));

    let s = sources(Some(&conf), &none);
    assert_eq!(journal(&s).unwrap(), ("/f/j".into(), at(&conf, 2)));
    assert_eq!(lookup_path(&s, PathKey::AdminSocket).unwrap(), ("/f/s".into(), at(&conf, 3)));

    let e = env(&[("DMS_JOURNAL_PATH", "/e/j"), ("DMS_ADMIN_SOCKET", "/e/s")]);
    let s = sources(Some(&conf), &e);
    assert_eq!(journal(&s).unwrap(), ("/e/j".into(), Origin::Env("DMS_JOURNAL_PATH".into())));
    let socket = lookup_path(&s, PathKey::AdminSocket).unwrap();
    assert_eq!(socket, ("/e/s".into(), Origin::Env("DMS_ADMIN_SOCKET".into())));
}

#[test]
fn given_config_flag_dms_config_and_default_file_when_looked_up_then_the_flag_wins_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.conf", "[server]\njournal_path = /a\n");
    let b = write(dir.path(), "b.conf", "[server]\njournal_path = /b\n");
    let c = write(dir.path(), "c.conf", "[server]\njournal_path = /c\n");
    let e = env(&[("DMS_CONFIG", b.to_str().unwrap())]);
    let mut s = sources(Some(&a), &e);
    s.default_config_path = c.clone();
    assert_eq!(journal(&s).unwrap().0, PathBuf::from("/a"));
    s.config_path = None;
    assert_eq!(journal(&s).unwrap().0, PathBuf::from("/b"));
    let none = env(&[]);
    let s = Sources { env: &none, ..s };
    assert_eq!(journal(&s).unwrap(), ("/c".into(), at(&c, 2)));
}

#[test]
fn given_other_sections_when_looked_up_then_only_server_counts_in_any_case_and_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    let none = env(&[]);
    for (text, expected) in [
        ("[DEFAULT]\njournal_path = /d\nadmin_socket = /d.sock\n[server]\n", None),
        ("[other]\njournal_path = /o\n[server]\nnode_id = n\n", None),
        ("[DEFAULT]\njournal_path = /d\n[server]\nJournal_Path: /s\n", Some("/s")),
        ("[server]\njournal_path = /s\n[other]\njournal_path = /o\n", Some("/s")),
    ] {
        let conf = write(dir.path(), "server.conf", text);
        let (path, origin) = journal(&sources(Some(&conf), &none)).unwrap();
        match expected {
            Some(expected) => assert_eq!(path, PathBuf::from(expected), "{text:?}"),
            None => assert_eq!((path, origin), ("/var/lib/dms/journal".into(), Origin::Default)),
        }
    }
}

#[test]
fn given_the_variable_when_the_named_file_is_missing_then_the_file_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.conf");
    let e = env(&[("DMS_JOURNAL_PATH", "/e/j"), ("DMS_CONFIG", missing.to_str().unwrap())]);
    assert_eq!(journal(&sources(None, &e)).unwrap().0, PathBuf::from("/e/j"));
    // Without the variable the named file must be there, and the error says who named it.
    let err = lookup_path(&sources(None, &e), PathKey::AdminSocket).unwrap_err();
    let expected = format!("cannot read the config file {} (DMS_CONFIG): ", missing.display());
    assert!(err.to_string().starts_with(&expected), "{err}");
    let none = env(&[]);
    let err = journal(&sources(Some(&missing), &none)).unwrap_err();
    let expected = format!("cannot read the config file {} (--config): ", missing.display());
    assert!(err.to_string().starts_with(&expected), "{err}");
}

#[test]
fn given_the_rest_of_the_config_broken_when_looked_up_then_only_this_key_matters() {
    let dir = tempfile::tempdir().unwrap();
    // No broker URL, an unknown key, an invalid value of another key: the daemon would not
    // start, the tool still finds its journal.
    let text =
        "[server]\nnode_id = compute-01\nprefetch = lots\nmount_base = /x\njournal_path = /j\n";
    let conf = write(dir.path(), "server.conf", text);
    let none = env(&[]);
    assert_eq!(journal(&sources(Some(&conf), &none)).unwrap(), ("/j".into(), at(&conf, 5)));
}

#[test]
fn given_what_the_daemon_refuses_when_looked_up_then_it_is_refused_with_the_daemons_words() {
    let dir = tempfile::tempdir().unwrap();
    let none = env(&[]);
    let refused = |text: &str| {
        let conf = write(dir.path(), "server.conf", text);
        journal(&sources(Some(&conf), &none)).unwrap_err().to_string()
    };
    // A repeated key: the daemon refuses the file (the old reader of dms-journal took the
    // last one), so the tool cannot pick another journal than the daemon would.
    let err = refused("[server]\njournal_path = /one\njournal_path = /two\n");
    assert!(err.ends_with(":3: 'journal_path' is already set on line 2"), "{err}");
    assert!(err.starts_with("invalid configuration: "), "{err}");
    let err = refused("[server]\njournal_path =\n");
    assert!(err.ends_with("is empty; unset it to get the default"), "{err}");
    let err = refused("[server]\njournal_path = relative/journal\n");
    assert!(err.ends_with("must be an absolute path"), "{err}");
    let err = refused("[server]\n  journal_path = /indented\n");
    assert!(err.contains("continuation lines are not supported"), "{err}");
    let e = env(&[("DMS_JOURNAL_PATH", "")]);
    let err = journal(&sources(None, &e)).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid configuration: journal_path (environment variable DMS_JOURNAL_PATH): is empty; \
         unset it to get the default"
    );
    assert!(!err.contains('\n'), "one line, for a tool's one-line error");
}

/// The lookup is the loader applied to one key: for any file and environment the daemon
/// loads, both name the same journal and admin socket.
#[test]
fn given_a_file_and_environment_the_daemon_loads_then_the_lookup_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        "[server]\n",
        "[server]\njournal_path = /srv/j\nadmin_socket = /run/x.sock\n",
        "[DEFAULT]\njournal_path = /srv/default\nadmin_socket = /run/default.sock\n[server]\n",
        "[DEFAULT]\njournal_path = /srv/default\n[server]\nJournal_Path: /srv/server\n",
        "[other]\njournal_path = /srv/other\n[server]\n",
        "[server]\njournal_path = /srv//j/./k/\n",
    ];
    for text in files {
        for journal_env in [None, Some("/env/journal")] {
            let conf = write(dir.path(), "server.conf", text);
            let mut e = env(&[("DMS_RABBITMQ_URL", URL), ("DMS_NODE_ID", "compute-01")]);
            if let Some(path) = journal_env {
                e.insert("DMS_JOURNAL_PATH".into(), path.into());
            }
            let daemon = Config::load(sources(Some(&conf), &e)).unwrap();
            let s = sources(Some(&conf), &e);
            let case = format!("{text:?} with DMS_JOURNAL_PATH {journal_env:?}");
            assert_eq!(journal(&s).unwrap().0, daemon.journal_path, "{case}");
            let socket = lookup_path(&s, PathKey::AdminSocket).unwrap().0;
            assert_eq!(socket, daemon.admin_socket, "{case}");
        }
    }
}
