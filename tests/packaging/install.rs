//! scripts/install.sh: a staged install with DESTDIR from the binaries this `cargo test`
//! built, and the unit it installs checked by systemd-analyze.

use super::*;

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
