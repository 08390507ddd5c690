//! Online `dms-journal`: the daemon's side (`journal_cli::answer`) gives the offline bytes,
//! and the tool, finding the journal locked, asks an admin socket (a stand-in server thread
//! here; the real daemon in `cli_journal_online`).

use super::*;
use dms::admin::protocol::JournalAnswer as Answer;
use dms::journal_cli::answer;
use dms_journal::JournalState;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// What the tool sends ahead of the command: its own view of the journal path.
fn view(path: &Path) -> Vec<String> {
    vec![format!("--resolved-path={}", path.display()), "--resolved-source=from --path".into()]
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

impl Fixture {
    /// The daemon's view: the journal it holds and the state it folded.
    fn answer(&self, args: &[String]) -> Answer {
        let state = JournalState { targets: self.states.clone() };
        answer(&self.journal, &state, &[], &self.path(), args)
    }
}

fn offline(o: &Output) -> Answer {
    Answer {
        exit_code: u8::try_from(o.status.code().unwrap()).unwrap(),
        stdout: stdout(o),
        stderr: stderr(o),
    }
}

const COMMANDS: &[&[&str]] = &[
    &["inspect"],
    &["inspect", "--summary"],
    &["inspect", "--target", "s3-alpha"],
    &["inspect", "--target", "s3-dirty"],
    &["inspect", "--request", "req-gamma-1"],
    &["inspect", "--json"],
    &["inspect", "--json", "--summary"],
    &["inspect", "--json", "--target", "s3-delta"],
    &["inspect", "--json", "--request", "req-alpha-2"],
    &["inspect", "--target", "nope"],
    &["inspect", "--request", "nope"],
    &["inspect", "--target", "../etc"],
    &["verify"],
    &["export"],
];

#[test]
fn given_the_daemons_journal_when_answered_online_then_the_bytes_are_the_offline_ones() {
    let f = Fixture::standard();
    let path = f.path();
    let online: Vec<Answer> = COMMANDS
        .iter()
        .map(|args| {
            let mut all = view(&path);
            all.extend(strings(args));
            f.answer(&all)
        })
        .collect();
    let (_dir, path) = f.close();
    for (args, online) in COMMANDS.iter().zip(online) {
        let offline = offline(&on(&path, args));
        assert_eq!(online, offline, "{args:?}");
    }
}

#[test]
fn given_no_client_view_when_answered_then_the_daemons_path_and_source_are_shown() {
    let f = Fixture::standard();
    let a = f.answer(&strings(&["inspect", "--json", "--summary"]));
    assert_eq!(a.exit_code, 0, "{}", a.stderr);
    let doc: Value = serde_json::from_str(&a.stdout).unwrap();
    assert_eq!(doc["journal"]["path"], f.path().to_str().unwrap());
    assert_eq!(doc["journal"]["source"], "the running dms-server's own");
    assert_eq!(doc["summary"]["records"], 20);
    let a = f.answer(&strings(&["inspect", "--summary"]));
    assert_eq!(a.stdout, expected::SUMMARY);
}

#[test]
fn given_path_or_config_when_answered_then_exit_64_and_the_daemons_journal_is_named() {
    let f = Fixture::standard();
    let message = format!(
        "dms-journal: --path and --config select a journal, which the admin socket cannot: \
         this dms-server answers for its own journal at {} only\n",
        f.path().display()
    );
    for args in [
        &["--path", "/elsewhere", "inspect"][..],
        &["inspect", "--path", "/elsewhere"],
        &["--config", "/etc/other.conf", "verify"],
    ] {
        let a = f.answer(&strings(args));
        assert_eq!(a, Answer { exit_code: 64, stdout: String::new(), stderr: message.clone() });
    }
}

#[test]
fn given_another_journal_when_answered_then_exit_2_naming_both() {
    let f = Fixture::standard();
    let other = tempfile::tempdir().unwrap();
    let mut args = view(other.path());
    args.push("inspect".into());
    let a = f.answer(&args);
    assert_eq!(a.exit_code, 2);
    assert!(a.stdout.is_empty());
    assert_eq!(
        a.stderr,
        format!(
            "dms-journal: this dms-server holds the journal at {}, not {} (another directory); \
             ask the daemon that holds that journal (DMS_ADMIN_SOCKET or admin_socket in its \
             config)\n",
            f.path().display(),
            other.path().display()
        )
    );
    // The same directory by another spelling is the same journal.
    let mut args = view(&f.path().join("."));
    args.push("inspect".into());
    assert_eq!(f.answer(&args).exit_code, 0);
}

#[test]
fn given_help_or_a_bad_command_line_when_answered_then_as_offline() {
    let f = Fixture::standard();
    for args in [&["--help"][..], &["inspect", "--help"], &["inspect", "--bogus"], &[]] {
        let online = f.answer(&strings(args));
        assert_eq!(online, offline(&run(args)), "{args:?}");
    }
}

#[test]
fn given_the_client_view_words_offline_when_run_then_they_are_unknown_options() {
    let (_dir, path) = Fixture::standard().close();
    let o = on(&path, &["--resolved-path=/x", "inspect"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(stderr(&o).contains("unexpected argument '--resolved-path'"), "{}", stderr(&o));
}

#[test]
fn given_a_shell_when_asking_for_completions_then_a_script_without_any_journal() {
    let o = run(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(script.contains("_dms__journal()"), "{script}");
    assert!(script.contains("--target"), "{script}");
    assert!(!script.contains("--resolved-path"), "the wire-only flags are hidden");
    let o = run(&["completions", "nosuchshell"]);
    assert_eq!(o.status.code(), Some(64));
}

// ---- the tool as a client of a stand-in admin server ----

/// The next connection, or a panic after 20 s (the tool never connected).
fn accept(listener: &UnixListener) -> UnixStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                return conn;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the tool did not connect: {e}"),
        }
    }
}

/// Serve one connection: read the request line, write `reply(request)` (or nothing) and
/// close, as the daemon's admin server does. Returns the request.
fn serve_one(listener: &UnixListener, reply: impl FnOnce(&Value) -> Option<String>) -> Value {
    let conn = accept(listener);
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).unwrap();
    let request: Value = serde_json::from_str(&line).unwrap();
    if let Some(mut text) = reply(&request) {
        text.push('\n');
        (&conn).write_all(text.as_bytes()).unwrap();
    }
    request
}

/// Run the tool while a stand-in server answers one connection with `reply`.
fn with_server(
    socket: &Path,
    command: std::process::Command,
    reply: impl FnOnce(&Value) -> Option<String> + Send,
) -> (Output, Value) {
    let listener = UnixListener::bind(socket).unwrap();
    let mut command = command;
    std::thread::scope(|s| {
        let server = s.spawn(|| serve_one(&listener, reply));
        let out = command.output().unwrap();
        (out, server.join().unwrap())
    })
}

fn tool(socket: Option<&Path>, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args).env_remove("DMS_JOURNAL_PATH").env_remove("DMS_CONFIG");
    match socket {
        Some(socket) => cmd.env("DMS_ADMIN_SOCKET", socket),
        None => cmd.env_remove("DMS_ADMIN_SOCKET"),
    };
    cmd
}

/// A stand-in that answers like the daemon: with `journal_cli::answer` over the fixture.
fn daemon_like(f: &Fixture) -> impl FnOnce(&Value) -> Option<String> + Send + '_ {
    move |request| {
        assert_eq!(request["command"], "journal");
        let args: Vec<String> = serde_json::from_value(request["args"].clone()).unwrap();
        let a = f.answer(&args);
        Some(json!({"ok": true, "data": a, "error": null}).to_string())
    }
}

#[test]
fn given_a_locked_journal_and_an_admin_socket_when_inspecting_then_the_daemon_answers() {
    let f = Fixture::standard();
    let (dir, path) = (tempfile::tempdir().unwrap(), f.path());
    let socket = dir.path().join("admin.sock");
    let p = path.to_str().unwrap();
    let mut online = Vec::new();
    for args in COMMANDS {
        let _ = std::fs::remove_file(&socket);
        let mut all = vec!["--path", p];
        all.extend_from_slice(args);
        let (o, request) = with_server(&socket, tool(Some(&socket), &all), daemon_like(&f));
        let mut sent = view(&path);
        sent.extend(Wire::canonical(args));
        assert_eq!(request, json!({"command": "journal", "args": sent}), "{args:?}");
        online.push(offline(&o));
    }
    assert_eq!(online[0].stdout, expected::OVERVIEW);
    assert_eq!(online[2].stdout, expected::ALPHA);
    let (_journal_dir, path) = f.close();
    for (args, online) in COMMANDS.iter().zip(online) {
        assert_eq!(online, offline(&on(&path, args)), "{args:?}");
    }
}

/// How the tool spells a command on the wire (`--opt=value`).
struct Wire;
impl Wire {
    fn canonical(args: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "--target" | "--request" => out.push(format!("{a}={}", it.next().unwrap())),
                _ => out.push((*a).to_owned()),
            }
        }
        // The tool sends flags in a fixed order: target, request, summary, json.
        let rank = |a: &String| match a.split('=').next().unwrap() {
            "--target" => 1,
            "--request" => 2,
            "--summary" => 3,
            "--json" => 4,
            _ => 0,
        };
        out.sort_by_key(rank);
        out
    }
}

#[test]
fn given_the_socket_in_the_config_file_when_the_journal_is_locked_then_it_is_used() {
    let f = Fixture::standard();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("from-config.sock");
    let conf = dir.path().join("server.conf");
    let text = format!(
        "[server]\njournal_path = {}\nadmin_socket = {}\n",
        f.path().display(),
        socket.display()
    );
    std::fs::write(&conf, text).unwrap();
    let conf_arg = conf.to_str().unwrap();
    let (o, request) = with_server(
        &socket,
        tool(None, &["--config", conf_arg, "inspect", "--summary"]),
        daemon_like(&f),
    );
    assert_eq!(stdout(&o), expected::SUMMARY, "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    let source = format!("--resolved-source=from journal_path in {}", conf.display());
    assert_eq!(request["args"][1], source.as_str());
    // And through the socket the JSON names the same source as offline.
    let _ = std::fs::remove_file(&socket);
    let (o, _) = with_server(
        &socket,
        tool(None, &["--config", conf_arg, "inspect", "--summary", "--json"]),
        daemon_like(&f),
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["journal"]["source"], format!("from journal_path in {}", conf.display()));
}

#[test]
fn given_a_daemon_that_cannot_answer_when_inspecting_then_exit_2_naming_journal_and_socket() {
    let f = Fixture::standard();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let p = f.path();
    let prefix = format!(
        "dms-journal: the journal at {} is in use by another process (is dms-server running?) \
         and the admin socket at {} (from DMS_ADMIN_SOCKET) cannot answer for it: ",
        p.display(),
        socket.display()
    );
    let args = ["--path", p.to_str().unwrap(), "inspect"];
    type Reply = Box<dyn FnOnce(&Value) -> Option<String> + Send>;
    let cases: Vec<(Reply, &str)> = vec![
        (
            Box::new(|_| Some(r#"{"ok":false,"data":null,"error":"root peers only"}"#.into())),
            "the daemon refused: root peers only",
        ),
        (Box::new(|_| None), "the daemon closed the connection without answering"),
        (
            Box::new(|_| Some("not json".into())),
            "the answer does not follow the admin protocol: expected ident at line 1 column 2",
        ),
    ];
    for (reply, why) in cases {
        let _ = std::fs::remove_file(&socket);
        let (o, _) = with_server(&socket, tool(Some(&socket), &args), reply);
        assert_eq!(o.status.code(), Some(2), "{why}");
        assert_eq!(stderr(&o), format!("{prefix}{why}\n"));
        assert!(o.stdout.is_empty());
    }
    // A socket file nobody listens on.
    let _ = std::fs::remove_file(&socket);
    drop(UnixListener::bind(&socket).unwrap());
    let o = tool(Some(&socket), &args).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), format!("{prefix}nothing is listening on it\n"));
}

/// As root (the test machines): drop to nobody, which may neither read the journal nor
/// connect to a root-only socket.
#[test]
fn given_a_non_root_user_when_inspecting_then_exit_2_permission_denied() {
    let is_root = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if !is_root.unwrap_or(false) || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let f = Fixture::standard();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["--path", f.path().to_str().unwrap(), "inspect"])
        .env_remove("DMS_JOURNAL_PATH")
        .env_remove("DMS_CONFIG")
        .env("DMS_ADMIN_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "dms-journal: the journal at {} cannot be read here (permission denied) and the \
             admin socket at {} (from DMS_ADMIN_SOCKET) cannot answer for it: permission \
             denied: the admin socket serves root only\n",
            f.path().display(),
            socket.display()
        )
    );
    drop(listener);
}
