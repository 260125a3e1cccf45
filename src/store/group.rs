//! Group commit: the changes of many concurrent callers written in one durable transaction.
//!
//! Layer: storage (synchronous; callers are blocking threads, as for every `Store` write).
//! A caller hands its change to [`Group::submit`] and blocks. The first caller that finds no
//! batch being written becomes the leader: it takes *every* change queued so far, applies them
//! in arrival order inside one transaction and commits it (one fsync for all of them), then
//! answers every caller in the batch and wakes the others; the next caller still waiting leads
//! the next batch. While one batch is committing, new changes queue up behind it, so under load
//! batches grow by themselves and an idle store still commits a lone change at once (no timer,
//! no waiting for company).
//!
//! Contract (what makes a grouped 201 as durable as an ungrouped one):
//! - no caller returns before the commit of the transaction holding its change has returned;
//! - a caller gets `Ok` only if that commit succeeded;
//! - if the batch fails — beginning the transaction, any change in it, or the commit — the
//!   transaction is dropped (nothing of it is written) and **every** caller in the batch gets
//!   the error ([`StoreError::same_kind`]), including those whose own change applied cleanly.
//!   A change must therefore return `Err` only for a storage failure; an outcome like "that id
//!   is taken" is an `Ok` value.
//!
//! The group is generic over the transaction type so that its tests run without redb.

use std::sync::{Arc, Condvar, Mutex};

use super::StoreError;

/// One caller's change, applied by the batch's leader inside the batch's transaction.
pub(crate) type Change<T> = Box<dyn FnOnce(&T) -> Result<(), StoreError> + Send>;

/// Where a caller's result is put by the leader of its batch.
type Slot = Arc<Mutex<Option<Result<(), StoreError>>>>;

/// See the module docs.
pub(crate) struct Group<T> {
    state: Mutex<State<T>>,
    /// Signalled whenever a batch is answered.
    answered: Condvar,
}

struct State<T> {
    queue: Vec<(Change<T>, Slot)>,
    /// A leader is writing a batch.
    leading: bool,
    /// Batches written so far (committed or failed), and the changes in them.
    batches: u64,
    changes: u64,
}

impl<T> Default for Group<T> {
    fn default() -> Self {
        Group {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
                batches: 0,
                changes: 0,
            }),
            answered: Condvar::new(),
        }
    }
}

impl<T> Group<T> {
    /// Queues `change` and returns once the transaction holding it has been committed (`Ok`)
    /// or has failed (the error, for every caller of that batch). `write` is called only if
    /// this caller leads a batch: it gets the batch's changes in arrival order and must apply
    /// all of them in one transaction and commit it, or return the first error.
    pub(crate) fn submit(
        &self,
        change: Change<T>,
        write: impl FnOnce(Vec<Change<T>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let slot: Slot = Arc::new(Mutex::new(None));
        let mut write = Some(write);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push((change, slot.clone()));
        loop {
            if let Some(r) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return r;
            }
            if st.leading {
                st = self.answered.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // No batch in flight and ours is not answered: it is still queued. Lead.
            st.leading = true;
            let (changes, slots): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.queue).into_iter().unzip();
            drop(st);
            let write = write.take().expect("a caller leads at most one batch");
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(changes)));
            let answer = |r: &Result<(), StoreError>| match r {
                Ok(()) => Ok(()),
                Err(e) => Err(e.same_kind()),
            };
            let failed = StoreError::Unavailable {
                reason: "a change in the same group commit panicked".into(),
            };
            for s in &slots {
                *s.lock().unwrap_or_else(|e| e.into_inner()) = Some(match &result {
                    Ok(r) => answer(r),
                    Err(_) => Err(failed.same_kind()),
                });
            }
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.leading = false;
            st.batches += 1;
            st.changes += slots.len() as u64;
            self.answered.notify_all();
            if let Err(panic) = result {
                drop(st);
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// (batches written, changes in them) since the store was opened.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (st.batches, st.changes)
    }

    /// Changes waiting for a batch (for tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A stand-in transaction: the ids of the changes applied to it.
    type Txn = Mutex<Vec<u32>>;

    fn change(id: u32) -> Change<Txn> {
        Box::new(move |t: &Txn| {
            t.lock().unwrap().push(id);
            Ok(())
        })
    }

    /// Callers on threads whose batch "commit" blocks until the test releases it (true:
    /// succeeds, false: fails with a full disk).
    struct Harness {
        group: Arc<Group<Txn>>,
        committed: Arc<Mutex<Vec<Vec<u32>>>>,
        release: mpsc::Sender<bool>,
        release_rx: Arc<Mutex<mpsc::Receiver<bool>>>,
        answers: mpsc::Receiver<(u32, Result<(), StoreError>)>,
        answers_tx: mpsc::Sender<(u32, Result<(), StoreError>)>,
        /// The changes applied by each batch, sent before its commit blocks.
        entered: mpsc::Receiver<Vec<u32>>,
        entered_tx: mpsc::Sender<Vec<u32>>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl Harness {
        fn new() -> Harness {
            let (release, release_rx) = mpsc::channel();
            let (answers_tx, answers) = mpsc::channel();
            let (entered_tx, entered) = mpsc::channel();
            Harness {
                group: Arc::new(Group::default()),
                committed: Arc::default(),
                release,
                release_rx: Arc::new(Mutex::new(release_rx)),
                answers,
                answers_tx,
                entered,
                entered_tx,
                threads: vec![],
            }
        }

        fn submit(&mut self, id: u32, ch: Change<Txn>) {
            let (g, c, rel, ans, ent) = (
                self.group.clone(),
                self.committed.clone(),
                self.release_rx.clone(),
                self.answers_tx.clone(),
                self.entered_tx.clone(),
            );
            self.threads.push(std::thread::spawn(move || {
                let r = g.submit(ch, |changes| {
                    let txn = Txn::default();
                    let applied = changes.into_iter().try_for_each(|ch| ch(&txn));
                    let ids = txn.into_inner().unwrap();
                    ent.send(ids.clone()).unwrap();
                    applied?;
                    if rel.lock().unwrap().recv().unwrap() {
                        c.lock().unwrap().push(ids);
                        Ok(())
                    } else {
                        Err(StoreError::DiskFull)
                    }
                });
                ans.send((id, r)).unwrap();
            }));
        }

        /// Waits (without sleeping) until `n` changes are queued behind the running batch.
        fn until_queued(&self, n: usize) {
            while self.group.queued() < n {
                std::thread::yield_now();
            }
        }

        fn answers(&self, n: usize) -> Vec<(u32, Result<(), StoreError>)> {
            let mut v: Vec<_> = (0..n).map(|_| self.answers.recv().unwrap()).collect();
            v.sort_by_key(|(id, _)| *id);
            v
        }

        fn join(self) {
            for t in self.threads {
                t.join().unwrap();
            }
        }
    }

    /// The first caller leads alone; callers arriving while its commit runs wait, are not
    /// answered before it returns, and are then written together as one batch by one of them.
    /// That batch's commit fails, so every caller in it gets the error.
    #[test]
    fn waiting_callers_share_one_batch_and_its_failure() {
        let mut h = Harness::new();
        h.submit(1, change(1));
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![1],
            "a lone caller leads at once"
        );
        // Each waiter is queued before the next is started, so arrival order is 2, 3.
        h.submit(2, change(2));
        h.until_queued(1);
        h.submit(3, change(3));
        h.until_queued(2);
        assert!(
            h.answers.try_recv().is_err(),
            "nobody is answered while the commit runs"
        );
        h.release.send(true).unwrap();
        let first = h.answers(1);
        assert!(first[0].0 == 1 && first[0].1.is_ok(), "{first:?}");

        // One of the two waiters leads the next batch, holding both changes in arrival order.
        assert_eq!(h.entered.recv().unwrap(), vec![2, 3]);
        assert!(
            h.answers.try_recv().is_err(),
            "nobody is answered before the commit returns"
        );
        h.release.send(false).unwrap();
        for (id, r) in h.answers(2) {
            assert!(
                matches!(r, Err(StoreError::DiskFull)),
                "caller {id} of the failed batch got {r:?}"
            );
        }
        assert_eq!(*h.committed.lock().unwrap(), vec![vec![1]]);
        assert_eq!(h.group.counts(), (2, 3));
        h.join();
    }

    /// A change that fails fails its whole batch: the caller whose change applied cleanly
    /// before it is not told it was saved, and the batch is never committed.
    #[test]
    fn a_failing_change_fails_every_caller_in_its_batch() {
        let mut h = Harness::new();
        h.submit(1, change(1));
        assert_eq!(h.entered.recv().unwrap(), vec![1]);
        h.submit(2, change(2));
        h.until_queued(1);
        h.submit(3, Box::new(|_| Err(StoreError::DiskFull)));
        h.until_queued(2);
        h.release.send(true).unwrap();
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![2],
            "3 failed after 2 applied"
        );
        // The failed batch never waits for a release, so its answers may overtake caller 1's:
        // all three are collected, sorted by caller.
        let answers = h.answers(3);
        assert!(answers[0].0 == 1 && answers[0].1.is_ok(), "{answers:?}");
        for (id, r) in &answers[1..] {
            assert!(matches!(r, Err(StoreError::DiskFull)), "caller {id}: {r:?}");
        }
        assert_eq!(*h.committed.lock().unwrap(), vec![vec![1]]);
        h.join();
    }
}
