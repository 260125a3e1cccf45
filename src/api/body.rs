//! Typed request bodies: each route that takes a JSON object reads it into a
//! `#[serde(deny_unknown_fields)]` struct with [`read`], and a refusal still names its field.
//!
//! serde_json's own errors do not say which field failed, so the field deserialisers here
//! ([`opt_string`] and the route modules' own) fail with [`refuse`], which carries the field
//! name and the sentence to the 400 `{"error":{"field", "message"}}`. Unknown fields are
//! refused first, naming the field and the ones expected ([`super::deny_unknown`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{deny_unknown, ApiError, Ctx};

/// Separates the field from the sentence inside a field deserialiser's error.
const SEP: char = '\u{1f}';

/// A request body: its struct and the fields it accepts.
pub trait Body: DeserializeOwned {
    /// Every field, as named in the JSON.
    const FIELDS: &'static [&'static str];
}

/// The request's JSON object read into `T`; a 400 naming the field otherwise.
pub fn read<T: Body>(ctx: &Ctx<'_>) -> Result<T, ApiError> {
    decode(ctx.object()?)
}

/// [`read`] for a route whose body may be left out: no body reads as `{}`.
pub fn read_or_empty<T: Body>(ctx: &Ctx<'_>) -> Result<T, ApiError> {
    match &ctx.body {
        None => decode(&Map::new()),
        Some(_) => read(ctx),
    }
}

/// [`read`] for an object already in hand.
pub fn decode<T: Body>(obj: &Map<String, Value>) -> Result<T, ApiError> {
    deny_unknown(obj, T::FIELDS, "")?;
    serde_json::from_value(Value::Object(obj.clone())).map_err(|e| {
        let text = e.to_string();
        match text.split_once(SEP) {
            Some((field, sentence)) => ApiError::bad_request(field, sentence),
            None => ApiError::bad_request("body", text),
        }
    })
}

/// The error of a field deserialiser: the 400 names `field` and says `sentence`.
pub fn refuse<E: serde::de::Error>(field: &str, sentence: impl std::fmt::Display) -> E {
    E::custom(format!("{field}{SEP}{sentence}"))
}

/// An optional string field (absent or null: `None`); anything else is refused as "'FIELD'
/// must be a string". Use with `#[serde(default, deserialize_with = …)]`.
pub fn opt_string<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(refuse(field, format!("'{field}' must be a string"))),
    }
}

/// An optional boolean field (absent or null: `None`), refused as "'FIELD' must be true or
/// false" otherwise.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        _ => Err(refuse(field, format!("'{field}' must be true or false"))),
    }
}

/// [`opt_bool`] for the routes whose sentence has always been "FIELD must be true or false"
/// (no quotes): `catch_up`, `retry`.
pub fn opt_flag<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        _ => Err(refuse(field, format!("{field} must be true or false"))),
    }
}

/// An optional whole number in `min..=max` (absent or null: `None`); anything else is refused
/// as "FIELD must be a whole number from MIN to MAX".
pub fn opt_whole<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                refuse(
                    field,
                    format!("{field} must be a whole number from {min} to {max}"),
                )
            }),
    }
}

/// Any JSON value, `null` included, kept as it was sent (serde's `Option` would read a null as
/// absent). Use with `#[serde(default, deserialize_with = "body::raw")]`.
pub fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// For the route modules' tests: the (field, sentence) of the 400 refusing `v` as a `T`.
#[cfg(test)]
pub fn refused<T: Body + std::fmt::Debug>(v: Value) -> (String, String) {
    let e = decode::<T>(v.as_object().expect("an object")).expect_err(&v.to_string());
    assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{v}");
    (e.field.unwrap_or_default(), e.message)
}
