//! Where a parked request's keystone token waits across a restart of the daemon.
//!
//! A request that waits for a busy target is parked: written to the journal's inbox and its
//! delivery acked, so a backlog on one target cannot hold the broker's whole prefetch window
//! (`transport/inbox.rs`). The token never goes to the journal (DESIGN §3.7), so before this,
//! a parked S3 mount resumed after a process crash had none and failed with "send it
//! again": a backup job failed because the daemon restarted.
//!
//! Kept instead in the kernel's keyring, as a `user` key in the user keyring of the
//! daemon's uid (`@u`):
//!
//! - it survives the daemon's process (kernel memory, held by the uid), so the next daemon
//!   finds it; it does not survive a reboot or a power cut, and no file, journal record,
//!   log line or argv ever holds it;
//! - only the daemon's uid can read it (`user` permission, for a next daemon that does not
//!   possess the key: systemd gives each service a private session keyring); another user,
//!   even with the journal in hand, cannot;
//! - it expires by itself ([`TOKEN_TTL`], longer than a keystone token lives by default),
//!   so a key whose request was never resumed (the journal moved aside, the daemon
//!   uninstalled) does not outlive its use; and it is invalidated as soon as the request
//!   is answered.
//!
//! Keeping the delivery unacked instead would hold a prefetch slot for as long as the
//! request waits, which is what parking exists to avoid.
//!
//! A key's name says whose it is: `dms-parked-token:<journal id>:<request key>` (the
//! journal's id is random per journal, so two daemons of one uid, as in the test suite,
//! never meet). It is kept before the request's inbox entry is written, so there is no
//! moment at which a parked request is durable and its token is not kept.
//! A keyring that refuses (no `CONFIG_KEYS`, a seccomp filter, the quota of the uid) costs
//! only this: the request is parked as before, and resumed without its token.

use secrecy::{ExposeSecret, SecretString};

/// How long a kept token stays: keystone's default token lifetime is one hour, and a
/// parked request is answered long before that or not at all.
pub const TOKEN_TTL_SECS: usize = 2 * 3600;
const PREFIX: &str = "dms-parked-token";

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("the kernel keyring refused to {op} ({detail})")]
    Refused { op: &'static str, detail: String },
}

/// The token of the parked request with key `key` of journal `journal`, kept outside the
/// process.
pub trait TokenKeep: Send + Sync + std::fmt::Debug {
    /// Keep `token` for the request `key`.
    fn keep(&self, journal: &str, key: &str, token: &SecretString) -> Result<(), KeyringError>;
    /// The token kept for `key`, if any; it stays kept until [`TokenKeep::forget`].
    fn find(&self, journal: &str, key: &str) -> Result<Option<SecretString>, KeyringError>;
    /// The request is answered (or will never be): its token is no longer needed.
    fn forget(&self, journal: &str, key: &str);
    /// Every token kept for `journal` but those of `parked` (its inbox at start-up): what a
    /// crash between a request's answer and its `forget`, or between keeping a token and
    /// parking its request, left behind.
    fn forget_all_but(&self, journal: &str, parked: &[&str]);
}

fn name(journal: &str, key: &str) -> String {
    format!("{PREFIX}:{journal}:{key}")
}

/// The real one: the user keyring of the daemon's uid.
#[derive(Debug, Default)]
pub struct KernelKeyring;

impl KernelKeyring {
    fn ring() -> Result<linux_keyutils::KeyRing, KeyringError> {
        use linux_keyutils::{KeyRing, KeyRingIdentifier};
        KeyRing::from_special_id(KeyRingIdentifier::User, true).map_err(refused("find @u"))
    }
}

fn refused(op: &'static str) -> impl Fn(linux_keyutils::KeyError) -> KeyringError {
    move |e| KeyringError::Refused { op, detail: format!("{e:?}") }
}

impl TokenKeep for KernelKeyring {
    fn keep(&self, journal: &str, key: &str, token: &SecretString) -> Result<(), KeyringError> {
        use linux_keyutils::{KeyPermissionsBuilder, Permission};
        let key = Self::ring()?
            .add_key(&name(journal, key), token.expose_secret().as_bytes())
            .map_err(refused("add a key"))?;
        let kept = key
            .set_timeout(TOKEN_TTL_SECS)
            .map_err(refused("set the key's timeout"))
            .and_then(|()| {
                let perms = KeyPermissionsBuilder::builder()
                    .posessor(Permission::ALL)
                    .user(Permission::ALL)
                    .build();
                key.set_perms(perms).map_err(refused("set the key's permissions"))
            });
        if kept.is_err() {
            let _ = key.invalidate();
        }
        kept
    }

    fn find(&self, journal: &str, key: &str) -> Result<Option<SecretString>, KeyringError> {
        let key = match Self::ring()?.search(&name(journal, key)) {
            Ok(key) => key,
            Err(
                // Revoked: invalidated (answered), not yet collected by the kernel.
                linux_keyutils::KeyError::KeyDoesNotExist
                | linux_keyutils::KeyError::KeyExpired
                | linux_keyutils::KeyError::KeyRevoked,
            ) => return Ok(None),
            Err(e) => return Err(refused("search for a key")(e)),
        };
        let mut bytes = zeroize::Zeroizing::new(vec![0u8; 16 * 1024]);
        let len = key.read(&mut *bytes).map_err(refused("read a key"))?;
        let text = std::str::from_utf8(bytes.get(..len).unwrap_or_default())
            .map_err(|_| KeyringError::Refused { op: "read a key", detail: "not UTF-8".into() })?;
        Ok(Some(SecretString::from(text)))
    }

    fn forget(&self, journal: &str, key: &str) {
        if let Ok(key) = Self::ring()
            .and_then(|ring| ring.search(&name(journal, key)).map_err(refused("search for a key")))
        {
            let _ = key.invalidate();
        }
    }

    fn forget_all_but(&self, journal: &str, parked: &[&str]) {
        let Ok(links) = Self::ring().and_then(|r| r.get_links(4096).map_err(refused("list @u")))
        else {
            return;
        };
        let ours = format!("{PREFIX}:{journal}:");
        for kept in links.iter().filter_map(linux_keyutils::LinkNode::as_key) {
            let Ok(meta) = kept.metadata() else { continue };
            let request = meta.get_description().strip_prefix(&ours);
            if request.is_some_and(|request| !parked.contains(&request)) {
                let _ = kept.invalidate();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The real keyring of this uid: what a next process of it finds, and nothing after
    /// `forget`. (No possession is needed: found by search of `@u`, read by the uid.)
    #[test]
    fn a_kept_token_is_found_by_name_until_forgotten_and_expires_by_itself() {
        let journal = uuid::Uuid::new_v4().simple().to_string();
        let keyring = KernelKeyring;
        let token = SecretString::from("gAAAAAB-keyring-test-token");
        keyring.keep(&journal, "req-7", &token).unwrap();
        let found = keyring.find(&journal, "req-7").unwrap().expect("the kept token");
        assert_eq!(found.expose_secret(), token.expose_secret());
        assert!(keyring.find(&journal, "req-8").unwrap().is_none(), "another key has none");
        let listed = std::fs::read_to_string("/proc/keys").unwrap();
        let line = listed.lines().find(|l| l.contains(&name(&journal, "req-7"))).expect("listed");
        // /proc/keys: id flags usage timeout perm uid gid type description
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields[3].ends_with('h') || fields[3].ends_with('m'), "a timeout: {line}");
        assert_eq!(fields[4], "3f3f0000", "possessor and user only: {line}");
        keyring.forget(&journal, "req-7");
        assert!(keyring.find(&journal, "req-7").unwrap().is_none(), "forgotten");
        // What a crash between an answer and its forget leaves is cleared at the next start.
        let keys = ["r-1", "r-2", "r-3"];
        for key in keys {
            keyring.keep(&journal, key, &token).unwrap();
        }
        keyring.forget_all_but(&journal, &["r-2"]);
        let kept: Vec<bool> =
            keys.iter().map(|key| keyring.find(&journal, key).unwrap().is_some()).collect();
        assert_eq!(kept, [false, true, false]);
        keyring.forget(&journal, "r-2");
    }
}
