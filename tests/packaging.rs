//! Packaging: `scripts/install.sh` (a staged install with DESTDIR, from the binaries this
//! `cargo test` built), `dist/server.conf.example` (loaded by the daemon's own loader) and
//! the `Dockerfile` (a text check of the seed's `docker run` contract: no Docker engine is
//! needed or used).
#![allow(clippy::unwrap_used)]

use dms::config::keys::{Fallback, KEYS};
use dms::config::{Config, Sources};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap()
}

/// The directory holding the binaries `cargo test` built: dms-server and dms-ctl of this
/// package, and dms-journal of the workspace (built by `cargo test --workspace`).
fn built_bin_dir() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_dms-server"));
    let dir = server.parent().unwrap().to_path_buf();
    // dms-ctl is a bin of this package; option_env! keeps this file compiling while it is
    // being written, the assertion says what is missing.
    let ctl = option_env!("CARGO_BIN_EXE_dms-ctl").map(PathBuf::from);
    assert!(
        ctl.as_deref().is_some_and(Path::exists),
        "the dms-ctl binary (src/bin/dms-ctl.rs) is not built; scripts/install.sh installs it"
    );
    let journal = dir.join("dms-journal");
    assert!(
        journal.exists(),
        "{} is missing: build it with `cargo build -p dms-journal` (cargo test --workspace does)",
        journal.display()
    );
    dir
}

/// Runs `bash scripts/install.sh <args>` with no DESTDIR/PREFIX from the environment.
fn install(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(args)
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .output()
        .unwrap()
}

fn install_ok(args: &[&str]) -> String {
    let out = install(args);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "install.sh {args:?} failed ({}):\n{text}", out.status);
    text
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `root` with (mode, size, inode, mtime): equal snapshots mean nothing was
/// created, removed, rewritten or chmod-ed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            out.insert(rel, (m.mode() & 0o7777, m.len(), m.ino(), m.mtime(), m.mtime_nsec()));
        }
    }
    out
}

fn exec_start(unit: &str) -> &str {
    let lines: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("ExecStart=")).collect();
    assert_eq!(lines.len(), 1, "one ExecStart= expected: {lines:?}");
    lines[0]
}

/// Tiny stand-ins for the three binaries: each answers `completions <shell>`.
fn fake_bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["dms-server", "dms-ctl", "dms-journal"] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1\" = completions ] && {{ echo \"# {name} $2 completion\"; exit 0; }}\ncase \"$1\" in man|--man) echo \".TH {name} 1\"; exit 0;; esac\nexit 1\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

const COMPLETIONS: [(&str, &[&str]); 2] = [
    ("dms-ctl", &["health", "list", "stats", "cleanup", "mount", "unmount"]),
    ("dms-journal", &["inspect", "verify", "export"]),
];

const MAN_PAGES: [(&str, &[&str]); 3] = [
    ("dms-server", &["\\-\\-config", "\\-\\-check\\-config"]),
    ("dms-ctl", &["health", "stats", "cleanup", "mount"]),
    ("dms-journal", &["inspect", "verify", "accept\\-loss", "export"]),
];

#[test]
fn staged_install_lands_every_file_with_its_mode_and_a_second_run_changes_nothing() {
    let bins = built_bin_dir();
    let tmp = temp_dir("dms-install-");
    let root = tmp.path().join("root");
    let destdir = format!("DESTDIR={}", root.display());
    let first = install_ok(&["--bin-dir", bins.to_str().unwrap(), &destdir]);
    assert!(first.contains("systemctl enable --now dms-server"), "no next steps:\n{first}");
    assert!(!first.contains("daemon-reload"), "a staged install must not call systemctl:\n{first}");
    assert!(!first.contains("warning"), "install.sh warned:\n{first}");

    let expected: &[(&str, u32)] = &[
        ("usr/bin/dms-server", 0o755),
        ("usr/bin/dms-ctl", 0o755),
        ("usr/bin/dms-journal", 0o755),
        ("etc/systemd/system/dms-server.service", 0o644),
        ("etc/trilio-dms", 0o755),
        ("etc/trilio-dms/server.conf", 0o640),
        ("etc/default/dms-server", 0o600),
        ("run/dms", 0o755),
        ("run/dms/s3", 0o755),
        ("var/lib/dms", 0o700),
        ("var/log/dms", 0o750),
        ("var/log/dms/helpers", 0o750),
        ("var/lib/trilio/triliovault-mounts", 0o755),
        ("usr/share/bash-completion/completions/dms-ctl", 0o644),
        ("usr/share/zsh/vendor-completions/_dms-ctl", 0o644),
        ("usr/share/fish/vendor_completions.d/dms-ctl.fish", 0o644),
        ("usr/share/bash-completion/completions/dms-journal", 0o644),
        ("usr/share/zsh/vendor-completions/_dms-journal", 0o644),
        ("usr/share/fish/vendor_completions.d/dms-journal.fish", 0o644),
        ("usr/share/man/man1/dms-server.1", 0o644),
        ("usr/share/man/man1/dms-ctl.1", 0o644),
        ("usr/share/man/man1/dms-journal.1", 0o644),
    ];
    for (path, want) in expected {
        let got = mode(&root.join(path));
        assert_eq!(got, *want, "{path}: mode {got:o}, expected {want:o}");
    }
    for name in ["dms-server", "dms-ctl", "dms-journal"] {
        assert!(
            std::fs::read(bins.join(name)).unwrap()
                == std::fs::read(root.join("usr/bin").join(name)).unwrap(),
            "{name} was not installed as built"
        );
    }

    // The unit is the shipped one; its ExecStart names the installed binary.
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/dms-server.service")).unwrap();
    let shipped = std::fs::read_to_string(repo().join("dist/systemd/dms-server.service")).unwrap();
    assert_eq!(unit, shipped, "with the default prefix the unit is installed unchanged");
    assert_eq!(exec_start(&unit), "/usr/bin/dms-server --config /etc/trilio-dms/server.conf");
    let conf = std::fs::read_to_string(root.join("etc/trilio-dms/server.conf")).unwrap();
    let example = std::fs::read_to_string(repo().join("dist/server.conf.example")).unwrap();
    assert_eq!(conf, example);
    let env = std::fs::read_to_string(root.join("etc/default/dms-server")).unwrap();
    assert!(
        env.lines().all(|l| l.trim().is_empty() || l.starts_with('#')),
        "the EnvironmentFile template must set nothing:\n{env}"
    );

    // Completions: non-empty, naming the subcommands; bash's file is valid bash.
    for (tool, subcommands) in COMPLETIONS {
        for file in [
            format!("usr/share/bash-completion/completions/{tool}"),
            format!("usr/share/zsh/vendor-completions/_{tool}"),
            format!("usr/share/fish/vendor_completions.d/{tool}.fish"),
        ] {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            assert!(!text.trim().is_empty(), "{file} is empty");
            for sub in subcommands {
                assert!(text.contains(sub), "{file} does not mention `{sub}`");
            }
        }
        let bash = root.join(format!("usr/share/bash-completion/completions/{tool}"));
        let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
        assert!(
            check.status.success(),
            "{}: {}",
            bash.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }

    // Man pages: roff from each binary's own clap definition, naming what --help names.
    for (tool, mentions) in MAN_PAGES {
        let page =
            std::fs::read_to_string(root.join(format!("usr/share/man/man1/{tool}.1"))).unwrap();
        assert!(page.contains(&format!(".TH {tool} 1")), "{tool}.1 has no title line");
        for word in mentions {
            assert!(page.contains(word), "{tool}.1 does not mention `{word}`");
        }
        assert!(!page.contains("\\fBman\\fR"), "{tool}.1 lists the hidden `man` command");
    }

    // An operator's edits survive a second run, which changes nothing else either.
    let edited = format!("{example}\n# edited by the operator\n");
    std::fs::write(root.join("etc/trilio-dms/server.conf"), &edited).unwrap();
    std::fs::write(root.join("etc/default/dms-server"), "DMS_RABBITMQ_URL=amqp://u:p@h:5672\n")
        .unwrap();
    let before = snapshot(&root);
    let second = install_ok(&["--bin-dir", bins.to_str().unwrap(), &destdir]);
    assert!(!second.contains("  installed "), "the second run installed something:\n{second}");
    assert!(second.contains("kept       /etc/trilio-dms/server.conf"), "{second}");
    assert_eq!(snapshot(&root), before, "the second run changed the staged tree:\n{second}");
    assert_eq!(std::fs::read_to_string(root.join("etc/trilio-dms/server.conf")).unwrap(), edited);
}

#[test]
fn another_prefix_gets_its_own_exec_start_and_completion_dirs() {
    let tmp = temp_dir("dms-install-prefix-");
    let bins = fake_bin_dir(tmp.path());
    let root = tmp.path().join("root");
    install_ok(&[
        "--bin-dir",
        bins.to_str().unwrap(),
        "--prefix",
        "/opt/dms",
        "--destdir",
        root.to_str().unwrap(),
    ]);
    for name in ["dms-server", "dms-ctl", "dms-journal"] {
        assert_eq!(mode(&root.join("opt/dms/bin").join(name)), 0o755, "{name}");
    }
    assert!(!root.join("usr/bin").exists());
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/dms-server.service")).unwrap();
    assert_eq!(exec_start(&unit), "/opt/dms/bin/dms-server --config /etc/trilio-dms/server.conf");
    for file in [
        "opt/dms/share/bash-completion/completions/dms-ctl",
        "opt/dms/share/zsh/site-functions/_dms-journal",
        "opt/dms/share/fish/vendor_completions.d/dms-ctl.fish",
    ] {
        assert!(std::fs::metadata(root.join(file)).unwrap().len() > 0, "{file}");
    }
    // The configuration stays in /etc whatever the prefix.
    assert_eq!(mode(&root.join("etc/trilio-dms/server.conf")), 0o640);
}

#[test]
fn install_refuses_a_bin_dir_without_the_binaries_and_unknown_arguments() {
    let tmp = temp_dir("dms-install-bad-");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let root = tmp.path().join("root");
    let destdir = format!("DESTDIR={}", root.display());
    let out = install(&["--bin-dir", empty.to_str().unwrap(), &destdir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dms-server is missing"), "{err}");
    assert!(!root.join("etc").exists(), "nothing may be installed before the check");

    let out = install(&["--frobnicate", &destdir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument: --frobnicate"));
}

#[test]
fn installed_unit_passes_systemd_analyze_verify_with_the_staged_binary() {
    let tmp = temp_dir("dms-install-verify-");
    let root = tmp.path().join("root");
    let server = PathBuf::from(env!("CARGO_BIN_EXE_dms-server"));
    // Only dms-server is run by the unit: the other two may be stand-ins here.
    let bins = fake_bin_dir(tmp.path());
    std::fs::copy(&server, bins.join("dms-server")).unwrap();
    install_ok(&["--bin-dir", bins.to_str().unwrap(), &format!("DESTDIR={}", root.display())]);

    let installed = root.join("etc/systemd/system/dms-server.service");
    let unit = std::fs::read_to_string(&installed).unwrap();
    let staged = root.join("usr/bin/dms-server");
    let exec = exec_start(&unit);
    let rewritten = unit.replace(
        &format!("ExecStart={exec}"),
        &format!(
            "ExecStart={}{}",
            staged.display(),
            exec.strip_prefix("/usr/bin/dms-server").unwrap()
        ),
    );
    let dir = tmp.path().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dms-server.service");
    std::fs::write(&path, rewritten).unwrap();

    let out =
        Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install the Debian package `systemd` \
             (scripts/lib/deps.sh ensure_test_infra)"
            )
        });
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify failed ({}):\n{text}", out.status);
    assert!(text.trim().is_empty(), "systemd-analyze verify warns:\n{text}");
}

/// `(key, value, commented)` of every `key = value` line of the example, commented or not.
fn example_lines(text: &str) -> Vec<(String, String, bool)> {
    text.lines()
        .filter_map(|line| {
            let (commented, body) = match line.strip_prefix("# ") {
                Some(body) => (true, body),
                None => (false, line),
            };
            let (key, value) = body.split_once(" = ")?;
            let known = KEYS.iter().any(|k| k.name == key);
            known.then(|| (key.to_owned(), value.to_owned(), commented))
        })
        .collect()
}

fn load(config_path: Option<PathBuf>, env: &BTreeMap<String, String>) -> Config {
    let sources = Sources {
        config_path,
        env,
        default_config_path: PathBuf::from("/nonexistent/dms-packaging-test.conf"),
    };
    let mut config = Config::load(sources).unwrap_or_else(|e| panic!("{e}"));
    config.config_file = None;
    config
}

#[test]
fn example_config_is_valid_for_the_daemon_loader_and_changes_no_default() {
    let example = repo().join("dist/server.conf.example");
    let config = load(Some(example.clone()), &BTreeMap::new());
    // The required values are placeholders, and look like it.
    assert!(config.node_id.as_str().contains("CHANGE-ME"), "{}", config.node_id.as_str());
    assert!(config.rabbitmq_url.to_string().contains(".invalid"), "{}", config.rabbitmq_url);

    // Apart from the two required keys, the example is the built-in defaults.
    let text = std::fs::read_to_string(&example).unwrap();
    let set: Vec<_> = example_lines(&text).into_iter().filter(|(_, _, c)| !c).collect();
    let names: Vec<&str> = set.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(names, ["rabbitmq_url", "node_id"], "only the required keys may be set");
    let env: BTreeMap<String, String> = [
        ("DMS_RABBITMQ_URL".to_owned(), set[0].1.clone()),
        ("DMS_NODE_ID".to_owned(), set[1].1.clone()),
    ]
    .into();
    assert_eq!(config, load(None, &env), "the example differs from the defaults");

    // The environment overrides the example, as the secrets guidance in it says.
    let mut env = BTreeMap::new();
    env.insert("DMS_RABBITMQ_URL".to_owned(), "amqp://dms:s3cret@rabbit:5672".to_owned());
    let overridden = load(Some(example), &env);
    assert_eq!(overridden.rabbitmq_url.expose(), "amqp://dms:s3cret@rabbit:5672");
}

#[test]
fn example_config_lists_every_key_once_with_its_default_and_uncommented_it_still_loads() {
    let text = std::fs::read_to_string(repo().join("dist/server.conf.example")).unwrap();
    let lines = example_lines(&text);
    let mut uncommented = text.clone();
    for key in KEYS {
        let found: Vec<_> = lines.iter().filter(|(k, _, _)| k == key.name).collect();
        assert_eq!(found.len(), 1, "`{}` must appear exactly once in the example", key.name);
        let (_, value, commented) = found[0];
        match key.fallback {
            Fallback::Required => assert!(!commented, "{} is required: set it", key.name),
            Fallback::Default(default) => {
                assert!(commented, "{}: defaults are shown commented out", key.name);
                assert_eq!(value, default, "{}: the example shows another default", key.name);
            }
            Fallback::Builtin(_) => {
                assert!(commented, "{}: defaults are shown commented out", key.name);
                assert_eq!(key.name, "nfs_allowed_options", "a new built-in default: show it");
                assert_eq!(*value, dms::wire::nfs::DEFAULT_ALLOWED_OPTIONS.join(","));
            }
            Fallback::Optional => assert!(commented, "{} is optional: leave it unset", key.name),
        }
        if matches!(key.fallback, Fallback::Default(_) | Fallback::Builtin(_)) {
            let line = format!("# {} = {value}\n", key.name);
            uncommented = uncommented.replacen(&line, &line[2..], 1);
        }
    }
    // Every default shown is a value the loader accepts, and means the default.
    let tmp = temp_dir("dms-example-");
    let path = tmp.path().join("server.conf");
    std::fs::write(&path, &uncommented).unwrap();
    assert_eq!(
        load(Some(path), &BTreeMap::new()),
        load(Some(repo().join("dist/server.conf.example")), &BTreeMap::new())
    );
}

#[test]
fn dockerfile_text_names_each_part_of_the_seeds_docker_run_contract() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let has = |needle: &str, why: &str| {
        assert!(text.contains(needle), "Dockerfile: no `{needle}` ({why})")
    };
    has("--privileged", "mount(2) needs CAP_SYS_ADMIN");
    has("--network host", "broker, Barbican, NFS as from the node");
    has("--device /dev/fuse", "the S3 helpers are FUSE file systems");
    has(
        "-v /var/lib/trilio/triliovault-mounts:/var/lib/trilio/triliovault-mounts:shared",
        "shared mount propagation: mounts must reach the host",
    );
    has("-v /run/dms:/run/dms", "PID files and the admin socket");
    has("-v /var/lib/dms:/var/lib/dms", "the journal outlives the container");
    for var in ["DMS_RABBITMQ_URL", "DMS_NODE_ID", "DMS_AUTH_URL"] {
        has(&format!("-e {var}="), "the seed's configuration by environment");
    }
    has("/usr/bin/s3vaultfuse.py", "where the operator's helper goes");
    has("cargo build --release --locked -p dms -p dms-journal --bins", "the release binaries");
    has("debian:12-slim", "the runtime image");
    for pkg in ["fuse3", "mount", "nfs-common", "ca-certificates", "python3", "util-linux"] {
        assert!(
            text.lines().any(|l| l.trim() == pkg || l.trim() == format!("{pkg} \\")),
            "Dockerfile: package {pkg} is not installed"
        );
    }
    let entrypoint = text.lines().find(|l| l.starts_with("ENTRYPOINT ")).unwrap();
    assert!(entrypoint.contains("\"/usr/bin/dms-server\"]"), "{entrypoint}");
    for bin in ["dms-server", "dms-ctl", "dms-journal"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("COPY --from=build") && l.contains(&format!("/out/{bin}"))),
            "Dockerfile: {bin} is not copied into the image"
        );
    }

    // The build context keeps every workspace member and the lock file.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert!(ignored.contains(&"target"), "the target directory must stay out of the context");
    for needed in [
        "src",
        "journal",
        "testfs",
        "Cargo.toml",
        "Cargo.lock",
        "dist",
        "benches",
        "examples",
        "tests",
    ] {
        assert!(!ignored.contains(&needed), ".dockerignore drops {needed}, which the build needs");
    }
}

#[test]
fn check_config_validates_the_example_and_refuses_a_bad_value_without_starting() {
    let example = repo().join("dist/server.conf.example");
    let run = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dms-server"))
            .env_clear()
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&example)
            .arg("--check-config")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(
            "configuration OK: node CHANGE-ME-compute-01, queue dms.CHANGE-ME-compute-01"
        ),
        "{out}"
    );
    let (code, out, err) =
        run(&[("DMS_RABBITMQ_URL", "amqp://u:hunter2@h:5672"), ("DMS_MOUNT_BASE", "relative")]);
    assert_eq!(code, Some(78), "{out}");
    assert!(err.contains("DMS_MOUNT_BASE"), "{err}");
    assert!(!err.contains("hunter2") && !out.contains("hunter2"), "the password was printed");
}
