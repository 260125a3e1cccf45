//! Group commit: the changes of many concurrent callers written in one durable transaction.
//!
//! Layer: storage (synchronous; callers are blocking threads, as for every `Store` write).
//! A caller hands its change to [`Group::submit`] and blocks. The first caller that finds no
//! batch being written becomes the leader: it takes *every* change queued so far, applies them
//! in arrival order inside one transaction and commits it (one fsync for all of them), then
//! answers and wakes every caller in the batch, and wakes the first caller queued behind it,
//! which leads the next batch (no other thread is woken: each waiter sleeps on its own
//! condition variable, and a gathering leader is woken only once its company is queued).
//! While one batch is committing, new changes queue up behind it, so under load batches grow
//! by themselves and an idle store still commits a lone change at once.
//!
//! Gathering. Callers that each wait for their answer before sending their next change (16 API
//! clients, each creating jobs one after another) would otherwise split into two cohorts that
//! take turns: the callers answered by one batch are still on their way back when the callers
//! that queued behind it start the next batch, so every batch holds about half of them and
//! each caller waits for two commits per change. So a leader first waits for the company it
//! can expect — the callers the previous batch just answered plus those queued behind it —
//! but only briefly: until that many changes are queued, or until a grace time after the
//! previous batch ended, whichever comes first. The store's grace ([`one_commit`]) is as long
//! as the previous commit took, capped, so it shrinks with the disk's fsync: a caller never
//! waits longer than if it had arrived while the previous batch was still committing. A
//! change arriving after the grace (an idle store, a lone caller) commits at once.
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
#![allow(clippy::disallowed_methods)] // storage driver: times its commits for the gather grace

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::StoreError;

/// One caller's change, applied by the batch's leader inside the batch's transaction.
pub(crate) type Change<T> = Box<dyn FnOnce(&T) -> Result<(), StoreError> + Send>;

/// Where a caller's result is put by the leader of its batch, and the caller's own wake-up:
/// a waiter is woken only when its answer is in, or when it is first in line to lead the
/// next batch, never for other callers' answers. (Waking every waiter for every batch cost
/// each create a futex round trip per batch it was not in: sys time on 2 cores.) The
/// condition variable is used with the group's state lock.
type Slot = Arc<SlotInner>;

struct SlotInner {
    result: Mutex<Option<Result<(), StoreError>>>,
    wake: Condvar,
}

/// How long a leader may wait for company after the previous batch ended, given how long that
/// batch's write (its changes and commit) took.
pub(crate) type Grace = fn(Duration) -> Duration;

/// The store's grace: as long as the previous commit took, at most 5 ms. A lone caller that
/// arrives just after a batch waits no longer than if it had arrived while that batch was
/// still committing (it would have waited for that commit); callers on their way back join
/// the batch instead of forming a second cohort. The cap bounds the wait on slow flash, where
/// commits are long enough for callers to queue behind them anyway.
pub(crate) fn one_commit(commit: Duration) -> Duration {
    commit.min(Duration::from_millis(5))
}

/// See the module docs.
pub(crate) struct Group<T> {
    state: Mutex<State<T>>,
    /// Signalled when the change a gathering leader waits for has been queued.
    arrived: Condvar,
    grace: Grace,
}

struct State<T> {
    queue: Vec<(Change<T>, Slot)>,
    /// A leader is gathering or writing a batch.
    leading: bool,
    /// A leader is waiting for company (so an arrival signals `arrived`).
    gathering: bool,
    /// Changes the next leader can expect: the previous batch's plus those queued behind it.
    expect: usize,
    /// When the previous batch was answered, and how long it took to write.
    last_end: Option<Instant>,
    last_write: Duration,
    /// Batches written so far (committed or failed), and the changes in them.
    batches: u64,
    changes: u64,
    /// Times a gathering leader was woken by an arrival (tests check it is once per batch),
    /// and times a waiter woke to find neither its answer nor a batch to lead.
    #[cfg(test)]
    leader_wakes: u64,
    #[cfg(test)]
    idle_wakes: u64,
}

impl<T> Group<T> {
    /// A group whose leaders wait at most `grace(previous write)` after the previous batch for
    /// the callers they can expect (see the module docs).
    pub(crate) fn new(grace: Grace) -> Self {
        Group {
            state: Mutex::new(State {
                queue: Vec::new(),
                leading: false,
                gathering: false,
                expect: 0,
                last_end: None,
                last_write: Duration::ZERO,
                batches: 0,
                changes: 0,
                #[cfg(test)]
                leader_wakes: 0,
                #[cfg(test)]
                idle_wakes: 0,
            }),
            arrived: Condvar::new(),
            grace,
        }
    }

    /// Queues `change` and returns once the transaction holding it has been committed (`Ok`)
    /// or has failed (the error, for every caller of that batch). `write` is called only if
    /// this caller leads a batch: it gets the batch's changes in arrival order and must apply
    /// all of them in one transaction and commit it, or return the first error.
    pub(crate) fn submit(
        &self,
        change: Change<T>,
        write: impl FnOnce(Vec<Change<T>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let slot: Slot = Arc::new(SlotInner {
            result: Mutex::new(None),
            wake: Condvar::new(),
        });
        let mut write = Some(write);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push((change, slot.clone()));
        // A gathering leader waits until the queue holds what it expects: wake it then, not
        // for every arrival before.
        if st.gathering && st.queue.len() >= st.expect {
            #[cfg(test)]
            {
                st.leader_wakes += 1;
            }
            self.arrived.notify_one();
        }
        loop {
            if let Some(r) = slot.result.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return r;
            }
            if st.leading {
                st = slot.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                #[cfg(test)]
                if st.leading && slot.result.lock().unwrap().is_none() {
                    st.idle_wakes += 1;
                }
                continue;
            }
            // No batch in flight and ours is not answered: it is still queued. Lead.
            st.leading = true;
            st = self.gather(st);
            let (changes, slots): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.queue).into_iter().unzip();
            drop(st);
            let write = write.take().expect("a caller leads at most one batch");
            let started = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(changes)));
            let took = started.elapsed();
            let answer = |r: &Result<(), StoreError>| match r {
                Ok(()) => Ok(()),
                Err(e) => Err(e.same_kind()),
            };
            let failed = StoreError::Unavailable {
                reason: "a change in the same group commit panicked".into(),
            };
            for s in &slots {
                *s.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(match &result {
                    Ok(r) => answer(r),
                    Err(_) => Err(failed.same_kind()),
                });
            }
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.leading = false;
            st.batches += 1;
            st.changes += slots.len() as u64;
            st.expect = slots.len() + st.queue.len();
            st.last_write = took;
            st.last_end = Some(Instant::now());
            // Under the state lock, so no waiter can miss its wake-up between its check and
            // its wait. Every caller of this batch (this one returns below), and the first
            // caller queued behind it, which leads the next batch.
            for s in slots.iter().filter(|s| !Arc::ptr_eq(s, &slot)) {
                s.wake.notify_one();
            }
            if let Some((_, next)) = st.queue.first() {
                next.wake.notify_one();
            }
            if let Err(panic) = result {
                drop(st);
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// The leader's wait for company: until the queue holds the changes it can expect, or
    /// until the grace after the previous batch has passed. Returns at once when the previous
    /// batch ended longer ago than that, or when the queue already holds them.
    fn gather<'a>(
        &self,
        mut st: std::sync::MutexGuard<'a, State<T>>,
    ) -> std::sync::MutexGuard<'a, State<T>> {
        let Some(last_end) = st.last_end else {
            return st;
        };
        let deadline = last_end + (self.grace)(st.last_write);
        st.gathering = true;
        while st.queue.len() < st.expect {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .arrived
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.gathering = false;
        st
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

    /// Whether a leader is waiting for company (for tests).
    #[cfg(test)]
    fn gathering(&self) -> bool {
        self.state.lock().unwrap().gathering
    }

    /// (leader wake-ups by arrivals, idle waiter wake-ups) so far (for tests).
    #[cfg(test)]
    fn wakes(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap();
        (st.leader_wakes, st.idle_wakes)
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
        /// Leaders that never wait for company (each batch takes what is queued).
        fn new() -> Harness {
            Harness::with_grace(|_| Duration::ZERO)
        }

        fn with_grace(grace: Grace) -> Harness {
            let (release, release_rx) = mpsc::channel();
            let (answers_tx, answers) = mpsc::channel();
            let (entered_tx, entered) = mpsc::channel();
            Harness {
                group: Arc::new(Group::new(grace)),
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

        /// Waits (without sleeping) until the caller woken to lead is waiting for company: a
        /// caller arriving before that would find nobody leading and lead itself.
        fn until_gathering(&self) {
            while !self.group.gathering() {
                std::thread::yield_now();
            }
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

        /// The running batch (of two) must not be answered before its commit returns; its
        /// commit then fails, and both its callers must get the error.
        fn fail_batch_of_two(&self) {
            assert!(
                self.answers.try_recv().is_err(),
                "nobody is answered before the commit returns"
            );
            self.release.send(false).unwrap();
            for (id, r) in self.answers(2) {
                assert!(
                    matches!(r, Err(StoreError::DiskFull)),
                    "caller {id} of the failed batch got {r:?}"
                );
            }
        }

        /// Caller 1 leads and commits alone while caller 2 queues behind it; 1 is answered.
        fn one_answered_one_queued(&mut self) {
            self.submit(1, change(1));
            assert_eq!(self.entered.recv().unwrap(), vec![1]);
            self.submit(2, change(2));
            self.until_queued(1);
            self.release.send(true).unwrap();
            assert!(self.answers(1)[0].1.is_ok());
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
        h.fail_batch_of_two();
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

    /// The cohort fix: the callers answered by one batch are expected back, and the next
    /// leader waits for them (within the grace) so that the next batch holds every caller.
    /// That gathered batch still answers nobody before its commit returns, and when its commit
    /// fails, every caller in it — the one that waited and the ones it waited for — gets the
    /// error.
    #[test]
    fn a_leader_waits_for_the_callers_just_answered_and_shares_their_fate() {
        // A grace far longer than the test: the leader starts only when its company is queued.
        let mut h = Harness::with_grace(|_| Duration::from_secs(600));
        h.one_answered_one_queued();
        // Caller 1 was answered; caller 2 leads next and expects 2 changes (1's and its own).
        // Caller 1 "comes back" only now, after its answer.
        h.submit(3, change(3));
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![2, 3],
            "the leader waited for the caller the previous batch answered"
        );
        h.fail_batch_of_two();
        assert_eq!(*h.committed.lock().unwrap(), vec![vec![1]]);
        assert_eq!(h.group.counts(), (2, 3));
        h.join();
    }

    /// Wake-ups cost each create a futex round trip on a busy 2-core box, so only the thread
    /// with something to do is woken: a gathering leader once, when the company it expects is
    /// queued (not for each arrival before), and after a batch only its callers and the one
    /// queued first (who leads next), never the others queued behind it.
    #[test]
    fn only_the_threads_with_something_to_do_are_woken() {
        let mut h = Harness::with_grace(|_| Duration::from_secs(600));
        h.submit(1, change(1));
        assert_eq!(h.entered.recv().unwrap(), vec![1]);
        h.submit(2, change(2));
        h.until_queued(1);
        h.submit(3, change(3));
        h.until_queued(2);
        h.release.send(true).unwrap();
        assert!(h.answers(1)[0].1.is_ok());
        // 2 leads and expects 3 (1's and the two queued): 4 completes it.
        h.until_gathering();
        h.submit(4, change(4));
        assert_eq!(h.entered.recv().unwrap(), vec![2, 3, 4]);
        // While that batch commits, 5 and 6 queue behind it.
        h.submit(5, change(5));
        h.until_queued(1);
        h.submit(6, change(6));
        h.until_queued(2);
        h.release.send(true).unwrap();
        assert_eq!(h.answers(3).len(), 3);
        // 5 leads and expects 5 (three answered, two queued): 7, 8 and 9 arrive one by one.
        h.until_gathering();
        for id in 7..=8 {
            h.submit(id, change(id));
            h.until_queued(id as usize - 4);
        }
        h.submit(9, change(9));
        assert_eq!(h.entered.recv().unwrap(), vec![5, 6, 7, 8, 9]);
        h.release.send(true).unwrap();
        assert_eq!(h.answers(5).len(), 5);
        assert_eq!(
            h.group.wakes(),
            (2, 0),
            "(leader wake-ups, idle wake-ups): one per gathered batch, none idle"
        );
        h.join();
    }

    /// Company that does not come back is waited for only until the grace has passed; then the
    /// leader writes what is queued.
    #[test]
    fn a_leader_stops_waiting_after_the_grace() {
        let mut h = Harness::with_grace(|_| Duration::from_millis(20));
        h.one_answered_one_queued();
        // Caller 1 never comes back: 2 leads alone once the grace has passed.
        assert_eq!(h.entered.recv().unwrap(), vec![2]);
        h.release.send(true).unwrap();
        assert!(h.answers(1)[0].1.is_ok());
        assert_eq!(*h.committed.lock().unwrap(), vec![vec![1], vec![2]]);
        h.join();
    }

    /// The store's grace is the previous commit's duration, capped, so it shrinks with the
    /// disk.
    #[test]
    fn the_grace_is_one_commit_at_most_five_milliseconds() {
        assert_eq!(
            one_commit(Duration::from_micros(300)),
            Duration::from_micros(300)
        );
        assert_eq!(
            one_commit(Duration::from_millis(2)),
            Duration::from_millis(2)
        );
        assert_eq!(
            one_commit(Duration::from_millis(40)),
            Duration::from_millis(5)
        );
    }
}
