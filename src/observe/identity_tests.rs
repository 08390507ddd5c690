#![allow(clippy::unwrap_used)]
use super::*;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// A child that is killed and reaped when the test ends, pass or fail, in a process group
/// of its own that is killed with it: a script helper's `sleep` must not outlive the test.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn and wait until the child runs `exe` with its arguments in place (until then /proc
/// shows the test's image, or an `env` on the way; the kernel switches the executable
/// before it lays out the new arguments and environment).
fn spawn(command: &mut Command, exe: impl AsRef<Path>) -> Kid {
    let kid = Kid(command.process_group(0).spawn().unwrap());
    let want = std::fs::canonicalize(exe).unwrap();
    let proc = Procfs::default();
    for _ in 0..500 {
        if proc.exe(kid.0.id()).as_ref() == Some(&want) && !proc.cmdline(kid.0.id()).is_empty() {
            return kid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{:?} never ran {}", command.get_program(), want.display());
}

fn claiming(program: &str, path: &str) -> Command {
    let mut c = Command::new(program);
    c.env_clear().env(MOUNT_PATH_VAR, path);
    c
}

fn no_mount(_: &str) -> Option<u32> {
    None
}

#[test]
fn given_processes_claiming_a_path_when_checked_then_only_the_helper_binary_run_by_our_user_is_proven(
) {
    let proc = Procfs::default();
    let proof = Proof::new(Path::new("/usr/bin/sleep"));
    let helper = spawn(claiming("/usr/bin/sleep", "/base/t1").arg("30"), "/usr/bin/sleep");
    assert_eq!(
        proof.check(&proc, helper.0.id(), no_mount),
        Claim::Helper { path: "/base/t1".into(), serves_mount: false }
    );

    // The same binary, the same claim, another user: never ours.
    let foreign = spawn(
        claiming("/usr/bin/sleep", "/base/t1").arg("30").uid(65534).gid(65534),
        "/usr/bin/sleep",
    );
    let claim = proof.check(&proc, foreign.0.id(), no_mount);
    assert!(
        matches!(&claim, Claim::Unproven { why, .. } if why.contains("owned by uid 65534")),
        "{claim:?}"
    );

    // Our user, the claim, and argv[0] set to the helper's path, but another executable.
    let impostor = spawn(
        claiming("/usr/bin/tail", "/base/t1").arg0("/usr/bin/sleep").args(["-f", "/dev/null"]),
        "/usr/bin/tail",
    );
    let claim = proof.check(&proc, impostor.0.id(), no_mount);
    assert!(
        matches!(&claim, Claim::Unproven { why, .. } if why.contains("not /usr/bin/sleep")),
        "{claim:?}"
    );

    // No claim at all.
    let quiet = spawn(Command::new("/usr/bin/sleep").arg("30").env_clear(), "/usr/bin/sleep");
    assert_eq!(proof.check(&proc, quiet.0.id(), no_mount), Claim::None);
}

#[test]
fn given_a_script_helper_when_checked_then_its_interpreter_running_it_is_proven_and_others_are_not()
{
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("helper.sh");
    std::fs::write(&script, "#!/usr/bin/env sh\nexec 3</dev/null\nsleep 30\n").unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let proof = Proof::new(&script);
    assert!(proof.interpreter.is_some(), "`env sh` resolved along the PATH");

    let proc = Procfs::default();
    let mut run = claiming(script.to_str().unwrap(), "/base/s");
    let helper = spawn(run.env("PATH", "/usr/bin:/bin"), proof.interpreter.clone().unwrap());
    assert_eq!(
        proof.check(&proc, helper.0.id(), no_mount),
        Claim::Helper { path: "/base/s".into(), serves_mount: false }
    );
    // The interpreter running some other script is not the helper.
    let other = dir.path().join("other.sh");
    std::fs::write(&other, "sleep 30\n").unwrap();
    let shell =
        spawn(claiming("/bin/sh", "/base/s").arg(&other), proof.interpreter.clone().unwrap());
    assert!(matches!(proof.check(&proc, shell.0.id(), no_mount), Claim::Unproven { .. }));
}

#[test]
fn given_a_claimant_without_a_fuse_descriptor_when_a_mount_exists_then_it_does_not_serve_it() {
    let proc = Procfs::default();
    let proof = Proof::new(Path::new("/usr/bin/sleep"));
    let helper = spawn(claiming("/usr/bin/sleep", "/base/t1").arg("30"), "/usr/bin/sleep");
    assert_eq!(
        proof.check(&proc, helper.0.id(), |path| (path == "/base/t1").then_some(40)),
        Claim::Helper { path: "/base/t1".into(), serves_mount: false }
    );
    let impostor =
        spawn(claiming("/usr/bin/tail", "/base/t1").args(["-f", "/dev/null"]), "/usr/bin/tail");
    let claim = proof.check(&proc, impostor.0.id(), |_| Some(40));
    assert!(matches!(claim, Claim::Unproven { .. }), "{claim:?}");
}
