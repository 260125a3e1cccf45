//! Storage of handler tasks and the handler registry (part of [`crate::store`]).
//!
//! Tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `tasks` | run id (u64) | [`crate::queue::Task`] as JSON: job, handler, method, params, attempt, state (queued with `available_at`, or leased with delivery id, expiry and deadline), deliveries, first lease, cancel flag, result or error |
//! | `handlers` | handler (peer) name | registered methods, registration time |
//!
//! A task row is written in the same transaction as the run row of its fire
//! ([`super::Store::start_runs_with_tasks`]), and every later task change rewrites the run row
//! from the task in the same transaction ([`super::Store::apply_task_changes`]), so the run
//! history never disagrees with the queue. Both tables are created by their first write; a
//! database from before handlers simply reads as having none.

use jiff::Timestamp;
use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::rows::{decode_rows, open_existing};
use super::runs::RunRows;
use super::{append_audit, corrupt, Store, StoreError};
use crate::model::{AuditEntry, HandlerRecord, RunRecord, RunStatus};
use crate::queue::{Task, TaskState};

pub(super) const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
pub(super) const HANDLERS: TableDefinition<&str, &[u8]> = TableDefinition::new("handlers");

/// Encodes a task as stored in `tasks`.
pub(super) fn encode_task(task: &Task) -> Vec<u8> {
    serde_json::to_vec(task).expect("rows serialise")
}

/// Decodes a `tasks` row and checks it names its run, a valid handler name and method.
pub(super) fn decode_task(id: u64, bytes: &[u8]) -> Result<Task, StoreError> {
    let key = format!("tasks/{id}");
    let task: Task = serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?;
    if task.run_id != id {
        return Err(corrupt(&key, format!("row names run {}", task.run_id)));
    }
    if peers::PeerName::new(&task.handler).is_err() {
        return Err(corrupt(&key, "the handler is not a valid peer name"));
    }
    crate::sched::check_method_name(&task.method).map_err(|e| corrupt(&key, e))?;
    Ok(task)
}

/// A `handlers` row.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerRow {
    name: String,
    methods: Vec<String>,
    registered_at: Timestamp,
}

/// Encodes a handler as stored in `handlers`.
fn encode_handler(rec: &HandlerRecord) -> Vec<u8> {
    serde_json::to_vec(&HandlerRow {
        name: rec.name.clone(),
        methods: rec.methods.clone(),
        registered_at: rec.registered_at,
    })
    .expect("rows serialise")
}

/// Decodes the `handlers` row of handler `name`.
fn decode_handler(name: &str, bytes: &[u8]) -> Result<HandlerRecord, StoreError> {
    let key = format!("handlers/{name}");
    let row: HandlerRow = serde_json::from_slice(bytes).map_err(|e| corrupt(&key, e))?;
    if row.name != name {
        return Err(corrupt(&key, "the row names another handler"));
    }
    Ok(HandlerRecord {
        name: row.name,
        methods: row.methods,
        registered_at: row.registered_at,
    })
}

/// Inserts the tasks of freshly recorded runs (inside [`Store::start_runs_with_tasks`]).
pub(super) fn insert_new(
    txn: &WriteTransaction,
    runs: &[RunRecord],
    tasks: &mut [(usize, Task)],
) -> Result<(), StoreError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(TASKS)?;
    for (i, task) in tasks.iter_mut() {
        task.run_id = runs[*i].id;
        table.insert(task.run_id, encode_task(task).as_slice())?;
    }
    Ok(())
}

/// The run row as the task says it is.
fn run_from_task(run: &mut RunRecord, t: &Task) {
    run.status = match t.state {
        TaskState::Queued { .. } => RunStatus::Queued,
        TaskState::Leased { .. } => RunStatus::Leased,
        TaskState::Succeeded => RunStatus::Succeeded,
        TaskState::Failed => RunStatus::Failed,
    };
    run.attempt = t.attempt;
    run.handler = Some(t.handler.clone());
    run.started_at = t.first_leased_at;
    run.queue_delay_ms = t
        .first_leased_at
        .map(|f| t.scheduled_at.duration_until(f).as_millis().max(0) as u64);
    run.finished_at = t.finished_at;
    run.duration_ms = match (t.first_leased_at, t.finished_at) {
        (Some(a), Some(b)) => Some(a.duration_until(b).as_millis().max(0) as u64),
        _ => None,
    };
    run.result = t.result.clone();
    run.error = match t.state {
        TaskState::Succeeded => None,
        _ => t.error.clone(),
    };
}

impl Store {
    /// Every stored task (queued, leased, and finished ones still remembered), by run id.
    pub fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let Some(table) = open_existing(&txn, TASKS)? else {
            return Ok(vec![]);
        };
        decode_rows(&table, decode_task)?.into_iter().collect()
    }

    /// Writes changed tasks and their run rows, and deletes forgotten tasks, in one durable
    /// transaction (what [`crate::queue::Core::take_changes`] returned).
    pub fn apply_task_changes(&self, upsert: &[Task], remove: &[u64]) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut tasks = txn.open_table(TASKS)?;
            let mut runs = RunRows::open(&txn)?;
            for t in upsert {
                tasks.insert(t.run_id, encode_task(t).as_slice())?;
                // A run pruned from history keeps no row to update.
                if let Some(mut run) = runs.get(t.run_id)? {
                    run_from_task(&mut run, t);
                    runs.put_run(&run)?;
                }
            }
            for id in remove {
                tasks.remove(*id)?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Every registered handler, by name.
    pub fn handlers(&self) -> Result<Vec<HandlerRecord>, StoreError> {
        let db = self.reader()?;
        let txn = db.begin_read()?;
        let Some(table) = open_existing(&txn, HANDLERS)? else {
            return Ok(vec![]);
        };
        decode_rows(&table, decode_handler)?.into_iter().collect()
    }

    /// Registers (or replaces) a handler's methods, with its audit entry, in one durable
    /// transaction.
    pub fn put_handler(&self, rec: &HandlerRecord, audit: AuditEntry) -> Result<(), StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(HANDLERS)?;
            table.insert(rec.name.as_str(), encode_handler(rec).as_slice())?;
            append_audit(&txn, &self.audit_meter, audit)?;
        }
        self.commit(txn)?;
        Ok(())
    }
}
