//! Why a job spec was rejected (part of [`super`]).

use std::fmt;

/// Why a job spec was rejected: the field's JSON path and a sentence saying what to change.
/// `Display` is `"{field}: {message}"` (just the message when the whole body is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// JSON path of the offending field, dot-separated (`"trigger.cron"`,
    /// `"action.webhook.headers.authorization"`); empty when the body itself is wrong.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl SpecError {
    pub(super) fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}
