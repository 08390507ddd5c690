//! Strict JSON: a body becomes a `serde_json::Value` only if no object repeats a key.
//!
//! serde_json keeps the last of two equal keys; another parser on the way (a proxy, an
//! auditing consumer) may keep the first. A body that means two different requests to two
//! readers is refused instead of guessed at.

use super::WireError;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The body as a JSON object. Anything else (invalid UTF-8, syntax errors, trailing bytes,
/// nesting past serde_json's recursion limit, duplicate keys, a non-object) is
/// [`WireError::InvalidJson`], which is what the Python service answered for bad bodies.
pub(super) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    // serde_json's own messages name the problem and its position, never request content;
    // the duplicate-key message below escapes and bounds the key.
    let Strict(value) = serde_json::from_slice(body)
        .map_err(|e| WireError::InvalidJson { detail: e.to_string() })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(WireError::InvalidJson {
            detail: format!("body is {}, not an object", kind(&other)),
        }),
    }
}

/// A string field, or `None` when absent or `null` (the Python service treated both alike).
pub(super) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, WireError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(WireError::WrongType { field, expected: "a string" }),
    }
}

/// A string field that must be present and non-null (it may be empty: emptiness is judged
/// by the field's own validation, with a more precise message).
pub(super) fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, WireError> {
    opt_str(obj, field)?.ok_or(WireError::MissingField { field })
}

/// An object field that must be present and non-null.
pub(super) fn required_object<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Map<String, Value>, WireError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(WireError::MissingField { field }),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(WireError::WrongType { field, expected: "an object" }),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `Value` whose objects had no repeated keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key '{}'", super::echo(&key))));
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}
