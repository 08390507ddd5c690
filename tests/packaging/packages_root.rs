//! The .deb in a real Debian 12: installed into a debootstrap'd bookworm root (unpacked
//! from the tarball `ensure_debian_root` in scripts/lib/deps.sh keeps), `dms-server
//! --check-config` run inside it, upgraded to a rebuilt package (version -2, made offline
//! from the built one) with an edited configuration that must survive, then removed and
//! purged. A fake `systemctl` records what the maintainer scripts ask of systemd. All of it
//! runs in a private mount namespace: /proc inside the root vanishes with it. The .rpm goes
//! into the same root with `rpm --root` (Debian's rpm; its scriptlets run chrooted there).

use super::packages::{deb, in_deb, rpm, run, CONFFILES, FILES};
use super::support::mountns;
use super::*;
use std::time::Duration;

fn root_tarball() -> PathBuf {
    let path = std::env::var_os("DMS_DEBIAN_ROOT_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/dms-test/debian12-minbase.tar.gz"));
    assert!(
        path.is_file(),
        "{} is missing: build it with `. scripts/lib/deps.sh && ensure_debian_root` \
         (scripts/test.sh does, through ensure_test_infra; needs the Debian package debootstrap)",
        path.display()
    );
    path
}

/// The unpacked root with /proc mounted; unmounted, then removed, whatever happens.
struct Root {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Root {
    fn unpack() -> Root {
        let dir = temp_dir("dms-pkg-root-");
        let path = dir.path().join("root");
        std::fs::create_dir(&path).unwrap();
        let tarball = root_tarball();
        run("tar", &["-xzf", tarball.to_str().unwrap(), "-C", path.to_str().unwrap()], "tar");
        run("mount", &["-t", "proc", "proc", path.join("proc").to_str().unwrap()], "mount");
        Root { path, _dir: dir }
    }

    fn file(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `args` run inside the root; (success, stdout + stderr).
    fn chroot(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("chroot")
            .arg(&self.path)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C")
            .output()
            .unwrap_or_else(|e| panic!("cannot run chroot ({e}): coreutils"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("# {args:?}\n{text}");
        (out.status.success(), text)
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.chroot(args);
        assert!(ok, "{args:?} failed inside the Debian 12 root:\n{text}");
        text
    }

    /// The systemctl calls recorded since the last call, one per line.
    fn systemctl_calls(&self) -> Vec<String> {
        let log = self.file("/var/log/systemctl.calls");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path.join("proc")).status();
    }
}

/// The built .deb as version `<crate version>-2` (same payload), the "rebuilt package".
fn rebuilt_deb(work: &Path, out: &Path) {
    let tree = work.join("v2");
    run("dpkg-deb", &["-R", deb().to_str().unwrap(), tree.to_str().unwrap()], "dpkg");
    let control_path = tree.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).unwrap();
    let old = format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"));
    assert!(control.contains(&old), "{control}");
    let new = control.replace(&old, &format!("Version: {}-2\n", env!("CARGO_PKG_VERSION")));
    std::fs::write(&control_path, new).unwrap();
    run(
        "dpkg-deb",
        &["--root-owner-group", "-b", tree.to_str().unwrap(), out.to_str().unwrap()],
        "dpkg",
    );
}

fn mode_in(root: &Root, path: &str) -> u32 {
    std::fs::metadata(root.file(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn deb_installs_checks_its_config_upgrades_keeping_edits_and_removes_in_debian_12() {
    root_tarball();
    deb();
    let name = "packages_root::deb_installs_checks_its_config_upgrades_keeping_edits_and_removes_in_debian_12";
    mountns::run_isolated_with_timeout(name, Duration::from_secs(300), || {
        let root = Root::unpack();
        let work = temp_dir("dms-pkg-work-");
        std::fs::copy(deb(), root.file("/tmp/dms_1.deb")).unwrap();
        rebuilt_deb(work.path(), &root.file("/tmp/dms_2.deb"));
        // A systemctl that records its arguments and says the service is active.
        let fake = root.file("/usr/local/sbin/systemctl");
        std::fs::write(&fake, "#!/bin/sh\necho \"$*\" >> /var/log/systemctl.calls\nexit 0\n")
            .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            root.chroot_ok(&["cat", "/etc/debian_version"]).trim().split('.').next(),
            Some("12")
        );

        // Install, as the README says (apt resolves Depends from the installed libc6).
        root.chroot_ok(&["apt-get", "install", "-y", "--no-install-recommends", "/tmp/dms_1.deb"]);
        for (path, want) in FILES {
            assert_eq!(mode_in(&root, &in_deb(path)), want, "{path}: mode after install");
        }
        for (dir, want) in
            [("/var/lib/dms", 0o700), ("/var/log/dms/helpers", 0o750), ("/run/dms/s3", 0o755)]
        {
            assert_eq!(mode_in(&root, dir), want, "{dir}: mode after install");
        }
        assert!(root.file("/var/lib/trilio/triliovault-mounts").is_dir());
        assert_eq!(
            root.systemctl_calls(),
            Vec::<String>::new(),
            "systemd does not run here: no systemctl"
        );
        let check = root.chroot_ok(&["dms-server", "--check-config"]);
        assert!(check.contains("configuration OK: node CHANGE-ME-compute-01"), "{check}");

        // The operator edits both configuration files.
        let conf = root
            .read("/etc/trilio-dms/server.conf")
            .replace("node_id = CHANGE-ME-compute-01", "node_id = pkg-upgrade-node");
        std::fs::write(root.file("/etc/trilio-dms/server.conf"), &conf).unwrap();
        let env = format!("{}DMS_LOG_LEVEL=debug\n", root.read("/etc/default/dms-server"));
        std::fs::write(root.file("/etc/default/dms-server"), &env).unwrap();
        let check = root.chroot_ok(&["dms-server", "--check-config"]);
        assert!(check.contains("configuration OK: node pkg-upgrade-node"), "{check}");

        // Upgrade, now with systemd "running" (the fake systemctl answers).
        std::fs::create_dir_all(root.file("/run/systemd/system")).unwrap();
        let upgrade = root.chroot_ok(&["dpkg", "-i", "/tmp/dms_2.deb"]);
        let version = root.chroot_ok(&["dpkg-query", "-W", "-f", "${Version}", "dms"]);
        assert_eq!(version, format!("{}-2", env!("CARGO_PKG_VERSION")));
        assert_eq!(
            root.read("/etc/trilio-dms/server.conf"),
            conf,
            "the upgrade overwrote server.conf"
        );
        assert_eq!(
            root.read("/etc/default/dms-server"),
            env,
            "the upgrade overwrote /etc/default/dms-server"
        );
        for path in CONFFILES {
            for suffix in [".dpkg-new", ".dpkg-dist", ".dpkg-old"] {
                assert!(!root.file(&format!("{path}{suffix}")).exists(), "{path}{suffix} appeared");
            }
        }
        let check = root.chroot_ok(&["dms-server", "--check-config"]);
        assert!(check.contains("configuration OK: node pkg-upgrade-node"), "{check}");
        // An upgrade reloads systemd and stops or restarts nothing: the running daemon and
        // its helpers stay; the operator restarts when it suits (the helpers stay up then too).
        assert_eq!(root.systemctl_calls(), ["daemon-reload", "is-active --quiet dms-server"]);
        assert!(
            upgrade.contains("systemctl restart dms-server (mounts and helpers stay up)"),
            "{upgrade}"
        );

        // Remove: the service is stopped and disabled (KillMode=process: the stop signals
        // dms-server only), the files go, the edited configuration and the journal stay.
        std::fs::create_dir_all(root.file("/var/lib/dms/journal")).unwrap();
        root.chroot_ok(&["dpkg", "-r", "dms"]);
        assert_eq!(root.systemctl_calls(), ["disable --now dms-server.service", "daemon-reload"]);
        for (path, _) in FILES.iter().filter(|(p, _)| !CONFFILES.contains(p)) {
            assert!(!root.file(&in_deb(path)).exists(), "{path} is left after removal");
        }
        assert_eq!(
            root.read("/etc/trilio-dms/server.conf"),
            conf,
            "remove keeps the configuration"
        );
        root.chroot_ok(&["dpkg", "-P", "dms"]);
        for path in CONFFILES {
            assert!(!root.file(path).exists(), "{path} is left after purge");
        }
        assert!(root.file("/var/lib/dms/journal").is_dir(), "purge must keep the journal");
        let (installed, _) = root.chroot(&["dpkg-query", "-W", "dms"]);
        assert!(!installed, "dms is still known to dpkg after purge");
    });
}

#[test]
fn rpm_installs_with_its_scriptlets_keeps_an_edited_config_and_saves_it_on_erase() {
    root_tarball();
    rpm();
    let name = "packages_root::rpm_installs_with_its_scriptlets_keeps_an_edited_config_and_saves_it_on_erase";
    mountns::run_isolated_with_timeout(name, Duration::from_secs(300), || {
        let root = Root::unpack();
        let rpm_path = rpm();
        let root_dir = root.path.to_str().unwrap();
        // --nodeps: the Debian root's glibc is dpkg's, not in rpm's database.
        let rpm_cmd = |args: &[&str]| {
            let mut all = vec!["--root", root_dir, "--nodeps"];
            all.extend_from_slice(args);
            run("rpm", &all, "rpm")
        };
        run("rpm", &["--root", root_dir, "--initdb"], "rpm");
        rpm_cmd(&["-i", rpm_path.to_str().unwrap()]);
        for (path, want) in FILES {
            let path = path.replace("/zsh/vendor-completions/", "/zsh/site-functions/");
            assert_eq!(mode_in(&root, &path), want, "{path}: mode after rpm -i");
        }
        // %post made the directories, as the .deb's postinst does.
        assert_eq!(mode_in(&root, "/var/lib/dms"), 0o700);
        assert_eq!(mode_in(&root, "/var/log/dms/helpers"), 0o750);
        let conf = root
            .read("/etc/trilio-dms/server.conf")
            .replace("node_id = CHANGE-ME-compute-01", "node_id = rpm-node");
        std::fs::write(root.file("/etc/trilio-dms/server.conf"), &conf).unwrap();
        let check = root.chroot_ok(&["dms-server", "--check-config"]);
        assert!(check.contains("configuration OK: node rpm-node"), "{check}");

        // Reinstalling over it keeps the edited file (%config(noreplace)).
        rpm_cmd(&["-U", "--replacepkgs", rpm_path.to_str().unwrap()]);
        assert_eq!(root.read("/etc/trilio-dms/server.conf"), conf, "rpm -U overwrote server.conf");

        // Erase: the files go; the edited configuration is kept as .rpmsave.
        rpm_cmd(&["-e", "dms"]);
        assert!(!root.file("/usr/bin/dms-server").exists(), "rpm -e left the binary");
        assert_eq!(root.read("/etc/trilio-dms/server.conf.rpmsave"), conf);
    });
}
