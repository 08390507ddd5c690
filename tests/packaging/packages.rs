//! The packages `scripts/package.sh` builds (scripts/test.sh runs it first, into
//! `target/packages`, or `$DMS_PACKAGE_DIR`): what the .deb and the .rpm hold, which files
//! are configuration files, what their maintainer scripts do, and the GLIBC floor of the
//! shipped binaries. packages_root.rs installs, upgrades and removes the .deb in Debian 12.

use super::*;

/// The newest glibc a shipped binary may need (RHEL 8 has 2.28; Ubuntu 22.04 has 2.35).
pub(crate) const GLIBC_FLOOR: (u32, u32) = (2, 28);

/// Every file both packages install, with its mode. The .rpm puts the zsh completions
/// in site-functions (RHEL's zsh path) instead of vendor-completions (Debian's).
pub(crate) const FILES: [(&str, u32); 15] = [
    ("/usr/bin/dms-server", 0o755),
    ("/usr/bin/dms-ctl", 0o755),
    ("/usr/bin/dms-journal", 0o755),
    ("/usr/lib/systemd/system/dms-server.service", 0o644),
    ("/etc/trilio-dms/server.conf", 0o640),
    ("/etc/default/dms-server", 0o600),
    ("/usr/share/bash-completion/completions/dms-ctl", 0o644),
    ("/usr/share/bash-completion/completions/dms-journal", 0o644),
    ("/usr/share/zsh/vendor-completions/_dms-ctl", 0o644),
    ("/usr/share/zsh/vendor-completions/_dms-journal", 0o644),
    ("/usr/share/fish/vendor_completions.d/dms-ctl.fish", 0o644),
    ("/usr/share/fish/vendor_completions.d/dms-journal.fish", 0o644),
    ("/usr/share/man/man1/dms-server.1", 0o644),
    ("/usr/share/man/man1/dms-ctl.1", 0o644),
    ("/usr/share/man/man1/dms-journal.1", 0o644),
];

/// The configuration files (sorted).
pub(crate) const CONFFILES: [&str; 2] = ["/etc/default/dms-server", "/etc/trilio-dms/server.conf"];

/// Where `path` of [`FILES`] lands in the .deb: cargo-deb gzips man pages (Debian policy).
pub(crate) fn in_deb(path: &str) -> String {
    if path.starts_with("/usr/share/man/") {
        format!("{path}.gz")
    } else {
        path.to_string()
    }
}

fn package_dir() -> PathBuf {
    std::env::var_os("DMS_PACKAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/packages"))
}

/// `name` in the package directory; fails naming scripts/package.sh when it is missing
/// (never built, or built for another version of the crate).
fn package(name: &str) -> PathBuf {
    let dir = package_dir();
    let path = dir.join(name);
    if !path.is_file() {
        let present: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        panic!(
            "{} is missing (the directory holds {present:?}): build the packages of this \
             version ({}) with `scripts/package.sh --out {}` (scripts/test.sh does)",
            path.display(),
            env!("CARGO_PKG_VERSION"),
            dir.display()
        );
    }
    path
}

pub(crate) fn deb() -> PathBuf {
    package(&format!("dms_{}-1_amd64.deb", env!("CARGO_PKG_VERSION")))
}

pub(crate) fn rpm() -> PathBuf {
    package(&format!("dms-{}-1.x86_64.rpm", env!("CARGO_PKG_VERSION")))
}

/// Runs a tool that must exist and succeed; its stdout. `package` names where it comes from.
pub(crate) fn run(program: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): install the Debian package `{package}` (scripts/lib/deps.sh)")
    });
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The highest `GLIBC_x.y` version among the dynamic symbols of `binary` (objdump -T).
pub(crate) fn highest_glibc(binary: &Path) -> (u32, u32) {
    let dump = run("objdump", &["-T", binary.to_str().unwrap()], "binutils");
    let mut versions: Vec<(u32, u32)> = dump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next().unwrap_or("0").parse().ok()?;
            Some((major, minor))
        })
        .collect();
    versions.sort_unstable();
    *versions.last().unwrap_or_else(|| panic!("{}: no GLIBC symbol versions", binary.display()))
}

#[test]
fn shipped_binaries_need_at_most_glibc_2_28_and_run() {
    let tmp = temp_dir("dms-pkg-glibc-");
    let root = tmp.path().join("deb");
    run("dpkg-deb", &["-x", deb().to_str().unwrap(), root.to_str().unwrap()], "dpkg");
    for name in ["dms-server", "dms-ctl", "dms-journal"] {
        let binary = root.join("usr/bin").join(name);
        let (major, minor) = highest_glibc(&binary);
        println!("{name}: GLIBC_{major}.{minor}");
        assert!(
            (major, minor) <= GLIBC_FLOOR,
            "{name} needs GLIBC_{major}.{minor}, more than GLIBC_{}.{}: it would not start on \
             RHEL 8 (objdump -T {})",
            GLIBC_FLOOR.0,
            GLIBC_FLOOR.1,
            binary.display()
        );
        let version = run(binary.to_str().unwrap(), &["--version"], "dms");
        assert_eq!(version.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
    }
    // The .rpm's automatic requirements come from the same binaries.
    let requires = run("rpm", &["-qpR", rpm().to_str().unwrap()], "rpm");
    for line in requires.lines().filter(|l| l.contains("(GLIBC_")) {
        let v = line.split("(GLIBC_").nth(1).unwrap().trim_end_matches(")(64bit)");
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(u32::MAX));
        let version = (parts.next().unwrap_or(u32::MAX), parts.next().unwrap_or(0));
        assert!(version <= GLIBC_FLOOR, "the .rpm requires {line}");
    }
}

/// (mode, path) of every regular file in `dpkg-deb -c` output.
fn deb_files(listing: &str) -> BTreeMap<String, u32> {
    listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let path = fields.last().unwrap().trim_start_matches('.').to_string();
            (path, symbolic_mode(fields[0]))
        })
        .collect()
}

/// `-rwxr-x---` as 0o750.
pub(crate) fn symbolic_mode(text: &str) -> u32 {
    text.chars().skip(1).take(9).fold(0, |m, c| (m << 1) | u32::from(c != '-'))
}

#[test]
fn deb_holds_every_file_with_its_mode_and_marks_the_configuration_as_conffiles() {
    let deb = deb();
    let deb = deb.to_str().unwrap();
    let files = deb_files(&run("dpkg-deb", &["-c", deb], "dpkg"));
    for (path, want) in FILES {
        let path = in_deb(path);
        let got = files.get(&path).unwrap_or_else(|| panic!("the .deb lacks {path}: {files:?}"));
        assert_eq!(*got, want, "{path}: mode {got:o} in the .deb, expected {want:o}");
    }
    let conffiles = run("dpkg-deb", &["--info", deb, "conffiles"], "dpkg");
    let mut listed: Vec<&str> = conffiles.lines().map(str::trim).collect();
    listed.sort_unstable();
    assert_eq!(listed, CONFFILES, "the .deb's conffiles");

    let control = run("dpkg-deb", &["-f", deb], "dpkg");
    assert!(control.contains(&format!("Version: {}-1\n", env!("CARGO_PKG_VERSION"))), "{control}");
    assert!(control.contains("libc6 (>= 2.28)"), "Depends must name the glibc floor:\n{control}");

    // The files are the repository's: the unit (KillMode=process: a stop never reaches the
    // helpers), the example configuration, man pages naming their options.
    let tmp = temp_dir("dms-pkg-deb-");
    let root = tmp.path();
    run("dpkg-deb", &["-x", deb, root.to_str().unwrap()], "dpkg");
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/dms-server.service")).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo().join("dist/systemd/dms-server.service")).unwrap()
    );
    assert!(unit.lines().any(|l| l == "KillMode=process"), "the unit must keep KillMode=process");
    let conf = std::fs::read_to_string(root.join("etc/trilio-dms/server.conf")).unwrap();
    assert_eq!(conf, std::fs::read_to_string(repo().join("dist/server.conf.example")).unwrap());
    for (tool, words) in MAN_PAGES {
        let gz = root.join(format!("usr/share/man/man1/{tool}.1.gz"));
        let page = run("zcat", &[gz.to_str().unwrap()], "gzip");
        for word in words {
            assert!(page.contains(word), "man page of {tool} lacks {word}");
        }
    }
    for (tool, subcommands) in COMPLETIONS {
        let bash = std::fs::read_to_string(
            root.join(format!("usr/share/bash-completion/completions/{tool}")),
        )
        .unwrap();
        for sub in subcommands {
            assert!(bash.contains(sub), "bash completion of {tool} lacks {sub}");
        }
    }
}

#[test]
fn rpm_lists_every_file_its_config_files_and_scriptlets() {
    let rpm = rpm();
    let rpm = rpm.to_str().unwrap();
    let info = run("rpm", &["-qpi", rpm], "rpm");
    assert!(info.contains(&format!("Version     : {}", env!("CARGO_PKG_VERSION"))), "{info}");
    let listing = run("rpm", &["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", rpm], "rpm");
    let files: BTreeMap<&str, u32> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_once(' ').map(|(m, p)| (p, symbolic_mode(m))))
        .collect();
    let plain = run("rpm", &["-qpl", rpm], "rpm");
    for (path, want) in FILES {
        let path = path.replace("/zsh/vendor-completions/", "/zsh/site-functions/");
        assert!(plain.lines().any(|l| l == path), "rpm -qpl lacks {path}:\n{plain}");
        assert_eq!(files.get(path.as_str()), Some(&want), "{path}: mode in the .rpm");
    }
    let config = run("rpm", &["-qpc", rpm], "rpm");
    let mut listed: Vec<&str> = config.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, CONFFILES, "the .rpm's config files");
    // noreplace: an edited file stays and the packaged one lands beside it as .rpmnew.
    let flags = run("rpm", &["-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm], "rpm");
    for path in CONFFILES {
        let line = flags.lines().find(|l| l.ends_with(path)).unwrap();
        assert!(
            line.starts_with("cn ") || line.contains('n'),
            "{path} must be %config(noreplace): {line}"
        );
    }
    let requires = run("rpm", &["-qpR", rpm], "rpm");
    assert!(requires.contains("libc.so.6(GLIBC_2.28)(64bit)"), "rpm -qpR:\n{requires}");
    // RHEL 8's rpm 4.14 cannot read a zstd payload.
    assert!(!requires.contains("PayloadIsZstd"), "the payload must be xz or gzip:\n{requires}");

    // Scriptlets: daemon-reload only where systemd runs; the service is stopped only on
    // removal ($1 = 0), never on upgrade, and never restarted.
    let scripts = run("rpm", &["-qp", "--scripts", rpm], "rpm");
    assert!(scripts.contains("[ -d /run/systemd/system ]"), "{scripts}");
    assert!(scripts.contains("systemctl daemon-reload"), "{scripts}");
    assert!(scripts.contains("if [ \"$1\" -eq 0 ]"), "stop only on removal:\n{scripts}");
    let commands: Vec<&str> = scripts
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("echo "))
        .collect();
    for never in ["systemctl stop", "systemctl restart", "try-restart", "kill"] {
        assert!(
            !commands.iter().any(|l| l.contains(never)),
            "the scriptlets must not run `{never}`:\n{scripts}"
        );
    }
}
