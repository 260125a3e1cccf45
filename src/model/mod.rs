//! The domain model: the records the appliance keeps and passes between its layers.
//!
//! Pure data in checked types, split by concept: [`peer`] (the server and its peers),
//! [`job`] (jobs, runs and run filters), [`handler`] (registered handlers), [`audit`] (who
//! did what). No I/O and no encodings: [`crate::store`] owns the rows on disk (each table's row
//! type is private there), [`crate::api::view`] the bodies on the wire. Only [`RunStatus`]
//! keeps serde, for its names (`succeeded`, `missed`, …), which rows, bodies and filters share, and
//! [`AuditAction`] reads and writes its wire strings. Every module that only needs these types (the
//! registry, the network driver, the scheduler, the API) imports them from here, not from
//! storage.

pub mod audit;
pub mod handler;
pub mod job;
pub mod peer;

pub use audit::{Actor, AuditAction, AuditEntry, JobAction, PeerAction, Via};
pub use handler::HandlerRecord;
pub use job::{JobRecord, JobSummary, RunFilter, RunRecord, RunStatus};
pub use peer::{PeerChange, PeerRecord, PeerStats, ServerRecord};
