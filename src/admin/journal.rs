//! Online `dms-journal`: the admin socket's `journal` command.
//!
//! While the daemon runs it holds the journal's lock, so the tool cannot open it; it sends
//! its command line here instead. The answer is computed by the tool's own code
//! (`dms_journal::cli::answer`) over the daemon's journal handle, its current state and the
//! problems its boot replay found, so an operator sees the same bytes and exit code online
//! as offline. Nothing here writes: every `dms-journal` command is read-only.

use super::protocol::JournalAnswer;
use dms_journal::store::{Journal, Problem};
use dms_journal::JournalState;
use std::path::Path;

/// Run the `dms-journal` arguments `args` (after the program name) against the daemon's
/// journal at `path`. Blocking (sled reads, whole-journal scans for `verify` and
/// `export`): call it from `spawn_blocking`.
pub fn answer(
    journal: &Journal,
    state: &JournalState,
    problems: &[Problem],
    path: &Path,
    args: Vec<String>,
) -> JournalAnswer {
    let dms_journal::cli::Answer { exit_code, stdout, stderr } =
        dms_journal::cli::answer(journal, state, problems, path, &args);
    JournalAnswer { exit_code, stdout, stderr }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn given_the_tools_answer_shape_when_encoded_then_it_is_the_protocols() {
        // The tool decodes the protocol's `JournalAnswer` with its own mirror type.
        let ours = JournalAnswer { exit_code: 1, stdout: "o\n".into(), stderr: "e\n".into() };
        let text = serde_json::to_string(&ours).unwrap();
        let theirs: dms_journal::cli::Answer = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&theirs).unwrap(), text);
    }

    #[test]
    fn given_an_empty_journal_when_asked_for_a_summary_then_the_tools_text_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (journal, replay) = Journal::open(&path).unwrap();
        let args = vec!["inspect".to_owned(), "--summary".to_owned()];
        let a = answer(&journal, &replay.state, &replay.problems, &path, args);
        assert_eq!(
            a,
            JournalAnswer {
                exit_code: 0,
                stdout: "0 targets: 0 mounted, 0 unmounted, 0 in flight, 0 dirty; 0 records; \
                         no problems\n"
                    .into(),
                stderr: String::new(),
            }
        );
        let a =
            answer(&journal, &replay.state, &[], &path, vec!["--path=/x".into(), "inspect".into()]);
        assert_eq!(a.exit_code, 64);
    }
}
