//! `dist/server.conf.example` loaded by the daemon's own loader, `--check-config`, and the
//! `Dockerfile` (a text check of the seed's `docker run` contract; no Docker engine is used).

use super::*;

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
    assert_eq!(overridden.rabbitmq_url.hosts()[0].expose(), "amqp://dms:s3cret@rabbit:5672");
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
    has("cargo build --release --locked -p dms --bins", "the release binaries");
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
