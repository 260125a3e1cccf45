//! Group commit: the changes of many concurrent callers written in one durable transaction.
//!
//! Layer: storage. Callers are either blocking threads ([`Group::submit`], as for every
//! `Store` write) or async tasks ([`Group::enqueue`]) that await their answer without holding
//! a thread: a waiting create costs a queued entry, not a blocking-pool thread and its wake-ups.
//! A leader takes *every* change queued so far, applies them in arrival order inside one
//! transaction and commits it (one fsync for all of them), then answers every caller in the
//! batch. While one batch is committing, new changes queue up behind it, so under load batches
//! grow by themselves and an idle store still commits a lone change at once.
//!
//! Who leads. A blocking caller that finds no batch being written leads one itself. An async
//! caller that finds none is told to start a leader ([`Group::lead_queued`], on a blocking
//! thread of its choice); that leader keeps leading while async callers keep queueing (one
//! thread writes batch after batch: no hand-off between them), and stops once a grace has
//! passed with nothing queued. When a blocking caller is first in line after a batch, the
//! leader hands over to it instead (it is awake anyway), waking only that thread: every waiter
//! sleeps on its own condition variable, and a gathering leader is woken only once its
//! company is queued.
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
//! - no caller is answered before the commit of the transaction holding its change has
//!   returned;
//! - a caller gets `Ok` only if that commit succeeded;
//! - if the batch fails — beginning the transaction, any change in it, or the commit — the
//!   transaction is dropped (nothing of it is written) and **every** caller in the batch gets
//!   the error ([`StoreError::same_kind`]), including those whose own change applied cleanly.
//!   A change must therefore return `Err` only for a storage failure; an outcome like "that id
//!   is taken" is an `Ok` value;
//! - if writing a batch panics, every caller in it and every caller queued behind it gets an
//!   error (nothing of theirs is written), and the panic goes on in the leader.
//!
//! The group is generic over the transaction type so that its tests run without redb.
#![allow(clippy::disallowed_methods)] // storage driver: times its commits for the gather grace

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::StoreError;

/// One caller's change, applied by the batch's leader inside the batch's transaction.
pub(crate) type Change<T> = Box<dyn FnOnce(&T) -> Result<(), StoreError> + Send>;

/// Where a blocking caller's result is put by the leader of its batch, and the caller's own
/// wake-up: a waiter is woken only when its answer is in, or when it is first in line to lead
/// the next batch, never for other callers' answers. (Waking every waiter for every batch cost
/// each create a futex round trip per batch it was not in: sys time on 2 cores.) The
/// condition variable is used with the group's state lock.
type Slot = Arc<SlotInner>;

struct SlotInner {
    result: Mutex<Option<Result<(), StoreError>>>,
    wake: Condvar,
}

/// Who waits for a queued change's answer.
enum Waiter {
    /// A blocking caller of [`Group::submit`], asleep on its slot.
    Thread(Slot),
    /// An async caller of [`Group::enqueue`], awaiting the receiver of this sender.
    Task(oneshot::Sender<Result<(), StoreError>>),
}

/// The answer an async caller awaits (see [`Group::enqueue`]).
pub(crate) type Answer = oneshot::Receiver<Result<(), StoreError>>;

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
    queue: Vec<(Change<T>, Waiter)>,
    /// A leader is gathering or writing a batch (or an async caller was told to start one).
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

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a change; a gathering leader is woken once the queue holds what it expects, not
    /// for every arrival before.
    fn push(&self, st: &mut State<T>, change: Change<T>, waiter: Waiter) {
        st.queue.push((change, waiter));
        if st.gathering && st.queue.len() >= st.expect {
            #[cfg(test)]
            {
                st.leader_wakes += 1;
            }
            self.arrived.notify_one();
        }
    }

    /// Queues `change` and returns once the transaction holding it has been committed (`Ok`)
    /// or has failed (the error, for every caller of that batch). `write` is called only if
    /// this caller leads: it gets a batch's changes in arrival order and must apply all of
    /// them in one transaction and commit it, or return the first error. A blocking caller
    /// leads when it finds no leader, and goes on leading while async callers are first in
    /// line (nobody else would).
    pub(crate) fn submit(
        &self,
        change: Change<T>,
        mut write: impl FnMut(Vec<Change<T>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let slot: Slot = Arc::new(SlotInner {
            result: Mutex::new(None),
            wake: Condvar::new(),
        });
        let mut st = self.lock();
        self.push(&mut st, change, Waiter::Thread(slot.clone()));
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
            st = self.lead(st, Some(&slot), &mut write);
        }
    }

    /// Queues `change` for an async caller, which awaits the returned answer (`Ok` once the
    /// transaction holding the change has been committed; the batch's error otherwise; a
    /// closed channel only if the leader it was told to start never ran). When the second
    /// value is true, no leader was running: the caller must call [`Group::lead_queued`] on a
    /// thread that may block (and need not wait for it).
    pub(crate) fn enqueue(&self, change: Change<T>) -> (Answer, bool) {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        self.push(&mut st, change, Waiter::Task(tx));
        let lead = !st.leading;
        st.leading = true;
        (rx, lead)
    }

    /// Leads batches for the callers queued (see [`Group::enqueue`]) until a grace has passed
    /// with nothing queued, or a blocking caller is first in line and takes over.
    pub(crate) fn lead_queued(
        &self,
        mut write: impl FnMut(Vec<Change<T>>) -> Result<(), StoreError>,
    ) {
        let st = self.lock();
        debug_assert!(st.leading, "enqueue marked the leader");
        drop(self.lead(st, None, &mut write));
    }

    /// Writes batch after batch (each after gathering, see the module docs) and answers their
    /// callers. `own` is the slot of the blocking caller leading, if one is: it stops once the
    /// queue is empty, where an async leader first waits out the grace for more company.
    /// Returns with `leading` cleared (and the next leader, if any, woken).
    fn lead<'a>(
        &'a self,
        mut st: MutexGuard<'a, State<T>>,
        own: Option<&Slot>,
        write: &mut impl FnMut(Vec<Change<T>>) -> Result<(), StoreError>,
    ) -> MutexGuard<'a, State<T>> {
        loop {
            st = self.gather(st);
            if st.queue.is_empty() {
                st.leading = false;
                return st;
            }
            let (changes, waiters): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.queue).into_iter().unzip();
            drop(st);
            let started = Instant::now();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(changes)));
            let took = started.elapsed();
            let answer = || match &result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.same_kind()),
                Err(_) => Err(panicked()),
            };
            let n = waiters.len();
            // Async callers are answered at once (a send wakes their task); blocking ones get
            // their result now and their wake-up under the state lock below.
            let mut threads = Vec::new();
            for w in waiters {
                match w {
                    Waiter::Thread(s) => {
                        *s.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer());
                        threads.push(s);
                    }
                    Waiter::Task(tx) => {
                        let _ = tx.send(answer());
                    }
                }
            }
            st = self.lock();
            st.batches += 1;
            st.changes += n as u64;
            st.expect = n + st.queue.len();
            st.last_write = took;
            st.last_end = Some(Instant::now());
            // Under the state lock, so no waiter can miss its wake-up between its check and
            // its wait: every blocking caller of this batch (a leading one returns below).
            for s in threads
                .iter()
                .filter(|s| own.is_none_or(|o| !Arc::ptr_eq(s, o)))
            {
                s.wake.notify_one();
            }
            if let Err(panic) = result {
                // The writer is in an unknown state: nothing queued behind is written either.
                for (_, w) in std::mem::take(&mut st.queue) {
                    match w {
                        Waiter::Thread(s) => {
                            *s.result.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(Err(panicked()));
                            s.wake.notify_one();
                        }
                        Waiter::Task(tx) => {
                            let _ = tx.send(Err(panicked()));
                        }
                    }
                }
                st.leading = false;
                drop(st);
                std::panic::resume_unwind(panic);
            }
            match st.queue.first() {
                // A blocking caller is first: it leads the next batch (it is awake anyway).
                Some((_, Waiter::Thread(next))) => {
                    next.wake.notify_one();
                    st.leading = false;
                    return st;
                }
                // A blocking leader's own answer is in: it returns when nobody is queued.
                None if own.is_some() => {
                    st.leading = false;
                    return st;
                }
                // Async callers are queued, or may be on their way back: gather, write on.
                _ => {}
            }
        }
    }

    /// The leader's wait for company: until the queue holds the changes it can expect, or
    /// until the grace after the previous batch has passed. Returns at once when the previous
    /// batch ended longer ago than that, or when the queue already holds them.
    fn gather<'a>(&self, mut st: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
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
        let st = self.lock();
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

/// What every caller of a batch whose write panicked is told (and every caller queued behind).
fn panicked() -> StoreError {
    StoreError::Unavailable {
        reason: "a change in the same group commit panicked".into(),
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

        /// A batch writer: applies the changes, reports them on `entered`, then blocks until
        /// the test releases the commit (true: committed, false: a full disk). On `panics`,
        /// a released batch panics instead.
        fn writer(&self) -> impl FnMut(Vec<Change<Txn>>) -> Result<(), StoreError> + Send {
            let (c, rel, ent) = (
                self.committed.clone(),
                self.release_rx.clone(),
                self.entered_tx.clone(),
            );
            move |changes| {
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
            }
        }

        fn submit(&mut self, id: u32, ch: Change<Txn>) {
            let (g, ans, write) = (self.group.clone(), self.answers_tx.clone(), self.writer());
            self.threads.push(std::thread::spawn(move || {
                let r = g.submit(ch, write);
                ans.send((id, r)).unwrap();
            }));
        }

        /// An async caller's change; returns its answer and whether it must start a leader.
        fn enqueue(&self, ch: Change<Txn>) -> (Answer, bool) {
            self.group.enqueue(ch)
        }

        /// A leader for the async callers, on its own thread (as the store's blocking pool),
        /// noting the thread of every batch it writes.
        fn lead(
            &self,
            threads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
        ) -> std::thread::JoinHandle<()> {
            let (g, mut write) = (self.group.clone(), self.writer());
            std::thread::spawn(move || {
                g.lead_queued(|changes| {
                    threads.lock().unwrap().push(std::thread::current().id());
                    write(changes)
                })
            })
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

    /// Async callers hold no thread while they wait: only the first one (finding no leader)
    /// is told to start one, and that one leader writes batch after batch on one thread while
    /// they keep queueing. Nobody is answered before the commit holding their change returns,
    /// and a failed batch fails each of its callers. With nothing more queued, the leader
    /// stops.
    #[test]
    fn awaiting_callers_share_one_leader_that_writes_batch_after_batch() {
        let h = Harness::new();
        let (mut a1, lead) = h.enqueue(change(1));
        assert!(lead, "the first caller starts a leader");
        let threads = Arc::new(Mutex::new(vec![]));
        let leader = h.lead(threads.clone());
        assert_eq!(h.entered.recv().unwrap(), vec![1]);
        let (mut a2, lead2) = h.enqueue(change(2));
        let (a3, lead3) = h.enqueue(change(3));
        assert!(!lead2 && !lead3, "one leader serves everyone queued behind");
        assert!(a1.try_recv().is_err(), "not answered while its commit runs");
        h.release.send(true).unwrap();
        assert!(a1.blocking_recv().unwrap().is_ok());
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![2, 3],
            "the same leader writes on"
        );
        assert!(a2.try_recv().is_err(), "not answered while its commit runs");
        h.release.send(false).unwrap();
        for a in [a2, a3] {
            assert!(matches!(
                a.blocking_recv().unwrap(),
                Err(StoreError::DiskFull)
            ));
        }
        leader.join().unwrap();
        let threads = threads.lock().unwrap();
        assert_eq!(threads.len(), 2);
        assert_eq!(
            threads[0], threads[1],
            "both batches on the leader's one thread"
        );
        assert_eq!(*h.committed.lock().unwrap(), vec![vec![1]]);
        assert_eq!(h.group.counts(), (2, 3));
        // The leader has stopped: the next caller starts a new one.
        assert!(h.enqueue(change(4)).1);
    }

    /// Blocking and async callers mix: a blocking leader goes on leading while an async
    /// caller is first in line (nobody else would), and an async leader hands over to a
    /// blocking caller first in line and stops.
    #[test]
    fn blocking_and_awaiting_callers_take_turns_leading() {
        let mut h = Harness::new();
        h.submit(1, change(1));
        assert_eq!(h.entered.recv().unwrap(), vec![1]);
        let (a2, lead) = h.enqueue(change(2));
        assert!(!lead, "a blocking caller is leading");
        h.release.send(true).unwrap();
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![2],
            "the blocking leader writes on"
        );
        h.release.send(true).unwrap();
        assert!(a2.blocking_recv().unwrap().is_ok());
        assert!(h.answers(1)[0].1.is_ok());

        let (a3, lead) = h.enqueue(change(3));
        assert!(lead);
        let leader = h.lead(Arc::default());
        assert_eq!(h.entered.recv().unwrap(), vec![3]);
        h.submit(4, change(4));
        h.until_queued(1);
        h.release.send(true).unwrap();
        assert!(a3.blocking_recv().unwrap().is_ok());
        leader.join().unwrap();
        assert_eq!(
            h.entered.recv().unwrap(),
            vec![4],
            "the blocking caller took over"
        );
        h.release.send(true).unwrap();
        assert!(h.answers(1)[0].1.is_ok());
        assert_eq!(h.group.counts(), (4, 4));
        h.join();
    }

    /// A batch whose write panics answers its callers and everyone queued behind it with an
    /// error (none of it was written), and the leader stops, so the next caller leads anew.
    #[test]
    fn a_panicking_batch_fails_its_callers_and_those_queued_behind() {
        let h = Harness::new();
        let (a1, _) = h.enqueue(change(1));
        let group = h.group.clone();
        let release = h.release_rx.clone();
        let leader = std::thread::spawn(move || {
            group.lead_queued(|_| {
                release.lock().unwrap().recv().unwrap();
                panic!("a bug in a change");
            })
        });
        while h.group.queued() > 0 {
            std::thread::yield_now();
        }
        let (a2, lead) = h.enqueue(change(2));
        assert!(!lead);
        h.release.send(true).unwrap();
        assert!(leader.join().is_err(), "the panic goes on in the leader");
        for a in [a1, a2] {
            assert!(matches!(
                a.blocking_recv().unwrap(),
                Err(StoreError::Unavailable { .. })
            ));
        }
        assert!(h.enqueue(change(3)).1, "the next caller starts a leader");
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
