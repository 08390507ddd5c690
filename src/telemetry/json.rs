//! JSON lines on stderr: one object per event, with the fields of every enclosing span
//! (root first) and then the event's own, flat, so a shipper filters on `target_id` the
//! way `journalctl` filters on `TARGET_ID`.
//!
//! Keys: `timestamp` (RFC 3339, UTC), `level`, `message`, then the fields. Numbers and
//! booleans stay JSON numbers and booleans; everything else is its plain `Display` text.

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The layer; it writes each line with one `write` on a locked stderr, so lines of
/// concurrent events never interleave.
#[derive(Debug)]
pub(super) struct JsonLines {
    write: fn(&[u8]),
}

impl JsonLines {
    pub(super) fn stderr() -> Self {
        Self {
            write: |line| {
                let _ = std::io::stderr().lock().write_all(line);
            },
        }
    }

    /// The line for one event (without the newline), from its spans' and its own fields.
    fn line<'a>(
        level: &tracing::Level,
        spans: impl Iterator<Item = Map<String, Value>>,
        event: &Event<'a>,
    ) -> Map<String, Value> {
        let mut line = Map::new();
        let mut timestamp = String::new();
        if SystemTime.format_time(&mut Writer::new(&mut timestamp)).is_ok() {
            line.insert("timestamp".into(), Value::String(timestamp));
        }
        line.insert("level".into(), Value::String(level.as_str().to_owned()));
        for fields in spans {
            line.extend(fields);
        }
        event.record(&mut Fields(&mut line));
        line
    }
}

/// A span's fields, kept in its extensions until it closes.
struct SpanFields(Map<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Fields(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let spans =
            ctx.event_scope(event).into_iter().flat_map(|scope| scope.from_root()).map(|span| {
                span.extensions().get::<SpanFields>().map(|f| f.0.clone()).unwrap_or_default()
            });
        let line = Self::line(event.metadata().level(), spans, event);
        if let Ok(mut bytes) = serde_json::to_vec(&line) {
            bytes.push(b'\n');
            (self.write)(&bytes);
        }
    }
}

/// Records fields into a JSON map. Fields the `log` bridge adds (`log.target`, ...) are
/// left out: they say where a library line came from, which `level` and `message` cover.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` fields arrive here too, formatted with their `Display`.
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    #[test]
    fn given_an_event_in_a_request_span_when_logged_then_one_flat_json_line_has_every_field() {
        let layer = JsonLines { write: |line| LINES.lock().unwrap().extend_from_slice(line) };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                target_id = "t-1",
                request_key = tracing::field::Empty,
                helper_pid = tracing::field::Empty
            );
            let _entered = span.enter();
            span.record("helper_pid", 4242_u32);
            tracing::warn!(outcome = "failed", elapsed_ms = 12_u64, "Mount failed for target t-1");
        });
        let text = String::from_utf8(LINES.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "Mount failed for target t-1");
        assert_eq!(v["target_id"], "t-1");
        assert_eq!(v["helper_pid"], 4242);
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["elapsed_ms"], 12);
        assert!(v.get("request_key").is_none(), "an empty field is not a field: {v}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    }
}
