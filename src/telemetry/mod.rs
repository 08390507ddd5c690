//! The daemon's edges with its operator: where its log lines go, what they look like, and
//! the signals that stop it.
//!
//! Under systemd, stderr is a stream socket into the journal, so the default (`auto`) sends
//! native journal entries there instead: every span and event field becomes a journal field
//! (`TARGET_ID`, `REQUEST_KEY`, `ACTION`, `OUTCOME`, `HELPER_PID`, ...), which is what
//! `journalctl -u dms-server TARGET_ID=x` filters on. Text is coloured only on a terminal:
//! journald and log shippers would store the escape codes as garbage. JSON lines carry the
//! same fields for shippers that want structure without the journal.
//!
//! Libraries log at WARN and above only, and the AMQP stack not at all: every broker event
//! reaches the transport as an error or a closed consumer, and the transport logs it once,
//! with what it does next. Nor does the platform certificate verifier, which would log an
//! ERROR of its own for every refused certificate (the transport's line, or Barbican's
//! reply, says it once). `RUST_LOG` replaces all of this for debugging: `level` and
//! `target=level` directives (a `Targets` filter: no span or field filters, so no regular
//! expression engine in the daemon, a sixth of its release build).

mod journal;
mod json;

use crate::config::{LogFormat, LogLevel};
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use journal::stderr_is_journal;

/// Where the log lines go, as [`init`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Text { colour: bool },
    Json,
    Journal,
}

impl Sink {
    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Text { colour: true } => "text (coloured: stderr is a terminal)",
            Sink::Text { colour: false } => "text",
            Sink::Json => "json",
            Sink::Journal => "journal (native entries)",
        }
    }
}

/// What [`init`] installed, and why it is not what was asked for, if it is not (to be
/// logged once the logger exists).
#[derive(Debug)]
pub struct Installed {
    pub sink: Sink,
    pub fallback: Option<String>,
}

/// Install the process-wide logger. Called once, by the binary; a second call changes
/// nothing.
pub fn init(level: LogLevel, format: LogFormat) -> Installed {
    let (sink, journal, fallback) = match format {
        LogFormat::Json => (Sink::Json, None, None),
        LogFormat::Text => (text(), None, None),
        LogFormat::Auto if !stderr_is_journal() => (text(), None, None),
        LogFormat::Auto | LogFormat::Journal => match journal::layer() {
            Ok(layer) => (Sink::Journal, Some(layer), None),
            Err(e) => (
                text(),
                None,
                Some(format!("cannot reach the journal ({e}); logging text to stderr")),
            ),
        },
    };
    let text_layer = match sink {
        Sink::Text { colour } => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .with_target(false),
        ),
        Sink::Json | Sink::Journal => None,
    };
    let json_layer = (sink == Sink::Json).then(json::JsonLines::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(text_layer)
        .with(json_layer)
        .with(journal)
        .try_init();
    Installed { sink, fallback }
}

fn text() -> Sink {
    Sink::Text { colour: std::io::stderr().is_terminal() }
}

/// `RUST_LOG` if set and valid, else [`directives`].
fn filter(level: LogLevel) -> Targets {
    let from_env = std::env::var("RUST_LOG").ok().and_then(|d| d.parse::<Targets>().ok());
    // The directives always parse (a test checks); INFO for everything is the fallback.
    from_env.unwrap_or_else(|| {
        directives(level).parse().unwrap_or_else(|_| Targets::new().with_default(Level::INFO))
    })
}

/// The daemon's own crates at `level`; libraries at WARN (or ERROR, if that is `level`);
/// the AMQP stack off (see the module comment).
pub fn directives(level: LogLevel) -> String {
    let libraries = level.min(LogLevel::Warn).as_str();
    let own = level.as_str();
    format!(
        "{libraries},lapin=off,amq_protocol=off,amq_protocol_tcp=off,\
         rustls_platform_verifier=off,dms={own},dms_server={own},dms_journal={own}"
    )
}

/// SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_level_when_building_the_filter_then_libraries_stay_at_warn_and_lapin_is_off() {
        let d = directives(LogLevel::Debug);
        assert!(d.starts_with("warn,lapin=off,"), "{d}");
        assert!(d.contains("dms=debug") && d.contains("dms_server=debug"), "{d}");
        assert!(directives(LogLevel::Error).starts_with("error,"));
        let targets: Targets = d.parse().expect("the directives parse");
        assert_eq!(targets.default_level(), Some(tracing::level_filters::LevelFilter::WARN));
        assert!(targets.would_enable("dms::engine", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("lapin::channel", &tracing::Level::ERROR));
        let verifier = "rustls_platform_verifier::verification::others";
        assert!(!targets.would_enable(verifier, &tracing::Level::ERROR));
        assert!(!targets.would_enable("hyper::proto", &tracing::Level::INFO));
    }
}
