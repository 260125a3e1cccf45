//! Handlers: peers that serve job methods (registered through the API).
//!
//! Pure data. Stored by [`crate::store`] in the `handlers` table; [`crate::tasks`] keeps the
//! registry in memory.

use jiff::Timestamp;

/// A registered handler.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerRecord {
    /// The handler's peer name.
    pub name: String,
    /// Method names it serves, sorted, unique.
    pub methods: Vec<String>,
    /// When it last registered.
    pub registered_at: Timestamp,
}
