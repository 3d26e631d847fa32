//! What a client that does not read may make the gateway hold: a byte [`Budget`] for the
//! messages handed to its HTTP responses and not yet taken by hyper, and the cut of a
//! connection whose response stops moving while the budget is spent ([`Budget::cut_stuck`]).
//!
//! A 2025 session has a budget of its own; every sessionless 2026-07-28 request of one
//! principal on one upstream shares one (each request is a session core of its own, and 64
//! of them in flight, each with its own 8 MiB, held 496 MiB for a client that read nothing:
//! found by a hostile pass). Messages are counted from when they are handed to a stream (or a
//! JSON answer is made) until hyper has taken them ([`Inbox`], [`Credit`]); a watchdog looks
//! at the responses once a second while the budget is spent, whether or not more output
//! comes (a session that got large answers and went quiet kept them before).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One message for a client stream: the JSON text of one JSON-RPC message (or batch), with
/// its sequence number on its stream (the SSE event id is `<stream>-<seq>`).
pub(crate) type Line = (u64, Bytes);

/// Bytes of messages handed to a budget's streams or made into JSON answers and not yet
/// taken by hyper ([`Inbox::progressed`], [`Credit::progressed`]): past this, the dispatcher
/// of a session on the budget waits (and so, once the pipeline's own queue is full, does the
/// server), as the stdio wrapper waits for a client that does not read. A client that stops
/// reading cannot make the gateway hold more than this per budget for long, besides the
/// pipeline's own queue of 32 MiB (one that read nothing of 3,000 notifications of 100 KB
/// took it from 46 to 406 MB).
pub(crate) const QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// How long a response may go without hyper asking for more of its message, while its
/// budget is over [`QUEUED_BYTES`], before its connection is cut ([`Budget::cut_stuck`]).
/// Responses hand hyper 64 KiB at a time, and hyper asks for more once it has written the
/// last into the socket (HTTP/1, all but its own buffer of about 400 KiB) or the client's
/// flow-control window took it (HTTP/2): a response not asked for 10 s has a client that
/// does not read, while one that reads slowly keeps asking.
pub(crate) const STUCK_FOR: Duration = Duration::from_secs(10);

/// How often the watchdog of a spent budget looks for stuck responses.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// While a budget is spent, a shared server's reader may still take messages for it past
/// the budget ([`Budget::admit`]), at most [`QUEUED_BYTES`] of them per this span: the pace
/// at which the principal's other requests go on while one of them does not read, until
/// the watchdog cuts that one. An overdrawn message is held at most about this long (up to
/// 2 s in its core before its response takes it, then [`STUCK_FOR`] and the watchdog's
/// second before a cut), so overdrafts add about [`QUEUED_BYTES`] and one message to what
/// the budget holds, whatever the size and number of messages.
pub(crate) const OVERDRAFT_SPAN: Duration = Duration::from_secs(14);

/// Messages shorter than this go on even while their budget is spent, as long as less than
/// [`QUEUED_BYTES`] is on its way to the cores ([`Budget::admit`]): the answers of ordinary
/// calls, progress and log notifications of the principal's other requests do not queue
/// behind one that does not read.
const ADMIT_FREELY_BELOW: usize = 64 * 1024;

/// How often [`Budget::admit`] looks again while it waits.
const ADMIT_POLL: Duration = Duration::from_millis(50);

/// The instant [`Progress::taken`] counts milliseconds from (tokio's clock, which tests can
/// pause and advance).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A response's progress through its connection, seen by its budget: since when hyper has
/// not asked for more while the response has something to send (part of a message, or a
/// message queued), and how to cut that connection.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// While a message is held: when hyper last asked for more of it, in milliseconds after
    /// [`epoch`] plus one; 0 while nothing is held.
    taken: AtomicU64,
    /// The connection the response goes out on ([`Inbox::attach`]).
    cut: OnceLock<CancellationToken>,
}

impl Progress {
    /// Marks the response as holding a message asked for now (`true`), or holding none.
    fn mark(&self, holding: bool) {
        let at = if holding {
            epoch().elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.taken.store(at, Ordering::Release);
    }

    /// Marks a message queued for the response as waiting from now, unless something already
    /// waits ([`Inbox::poll_recv`] clears the mark when nothing is queued).
    pub(crate) fn mark_if_idle(&self) {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let _ = self
            .taken
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// How long the message it holds has waited for hyper to ask for more; `None` if it
    /// holds none.
    fn waiting(&self) -> Option<Duration> {
        match self.taken.load(Ordering::Acquire) {
            0 => None,
            at => Some(
                epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }
}

/// The byte budget of a 2025 session, or of the sessionless requests of one principal on one
/// upstream ([`QUEUED_BYTES`]), and the responses that hold its bytes.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Whose budget it is, for the log: a session id, or the principal and upstream.
    name: String,
    used: AtomicUsize,
    freed: Notify,
    /// Every response alive that may hold this budget's bytes ([`Budget::watch`]).
    responses: Mutex<Vec<Weak<Progress>>>,
    /// Whether the watchdog runs ([`Budget::take`]).
    watching: AtomicBool,
    /// Bytes read from shared servers for this budget's requests and not yet handed to
    /// their session cores ([`Budget::admit`], [`Held`]).
    transit: AtomicUsize,
    /// When the next message may be let through past a spent budget ([`Budget::admit`]).
    overdrawn: Mutex<Option<Instant>>,
}

impl Budget {
    pub(crate) fn new(name: String) -> Arc<Budget> {
        Arc::new(Budget {
            name,
            ..Budget::default()
        })
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Counts `n` more bytes; past [`QUEUED_BYTES`], starts the watchdog that cuts the
    /// connections of responses stuck for [`STUCK_FOR`] until the budget has room again.
    pub(crate) fn take(self: &Arc<Self>, n: usize) {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        if before + n >= QUEUED_BYTES && !self.watching.swap(true, Ordering::AcqRel) {
            self.start_watchdog();
        }
    }

    fn start_watchdog(self: &Arc<Self>) {
        // Outside a runtime (unit tests of the routing) nothing can be cut.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.watching.store(false, Ordering::Release);
            return;
        };
        let budget = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(b) = budget.upgrade() else { return };
                if b.used() < QUEUED_BYTES {
                    b.watching.store(false, Ordering::Release);
                    // A take between the load and the store started no watchdog: this one
                    // goes on if it pushed the budget over again.
                    if b.used() < QUEUED_BYTES || b.watching.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
                b.cut_stuck();
            }
        });
    }

    /// Gives back `n` bytes; waiters hear only when the budget goes back under
    /// [`QUEUED_BYTES`] (no lock per message taken).
    pub(crate) fn give(&self, n: usize) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        if before >= QUEUED_BYTES && before - n < QUEUED_BYTES {
            self.freed.notify_waiters();
        }
    }

    /// Waits until the budget has room for more.
    pub(crate) async fn room(&self) {
        if self.used() < QUEUED_BYTES {
            return;
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.used() < QUEUED_BYTES {
                return;
            }
            freed.await;
        }
    }

    /// Lets one message of `n` bytes, read from a shared server (`proxy/pool`) for one of the
    /// budget's sessionless requests, go on to its session core, and counts it until the
    /// returned [`Held`] is dropped (once the core has taken it). While the budget is spent
    /// the reader waits (a message of [`ADMIT_FREELY_BELOW`] or more, or any once that much
    /// is on its way): for room, or for its turn past the budget, at most [`QUEUED_BYTES`]
    /// per [`OVERDRAFT_SPAN`] for the whole budget; meanwhile the server's output fills its
    /// pipe and the server waits (what it writes after that message waits too). Why: the
    /// answers were read whole into the cores before any budget applied, so a principal that
    /// read none of 64 answers of 16 MB made the gateway hold 1.1 GB (helper-85 F1); the
    /// budget bounded how long, not how much.
    pub(crate) async fn admit(self: &Arc<Self>, n: usize) -> Held {
        loop {
            let transit = self.transit.load(Ordering::Acquire);
            let free = self.used() + transit < QUEUED_BYTES
                || (n < ADMIT_FREELY_BELOW && transit < QUEUED_BYTES);
            if free {
                // Checked and counted as one step: several readers of one budget cannot all
                // pass on the same room.
                if self
                    .transit
                    .compare_exchange(transit, transit + n, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return self.held(n);
                }
                continue;
            }
            let turn = {
                let mut next = self.overdrawn.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match *next {
                    Some(at) if now < at => Some(at),
                    _ => {
                        // This one goes now; the next after its share of the span.
                        let share = OVERDRAFT_SPAN.mul_f64(n as f64 / QUEUED_BYTES as f64);
                        *next = Some(now + share);
                        None
                    }
                }
            };
            match turn {
                None => return self.count(n),
                Some(turn) => tokio::time::sleep_until(turn.min(Instant::now() + ADMIT_POLL)).await,
            }
        }
    }

    /// Counts `n` bytes on their way to a core without waiting (a shared server that has
    /// exited: what is left is at most its pipe's contents).
    pub(crate) fn count(self: &Arc<Self>, n: usize) -> Held {
        self.transit.fetch_add(n, Ordering::AcqRel);
        self.held(n)
    }

    /// Bytes on their way from shared servers to the cores.
    #[cfg(test)]
    pub(crate) fn in_transit(&self) -> usize {
        self.transit.load(Ordering::Acquire)
    }

    fn held(self: &Arc<Self>, n: usize) -> Held {
        Held {
            budget: self.clone(),
            bytes: n,
        }
    }

    /// A new response's progress, looked at by [`Budget::cut_stuck`] while it lives.
    pub(crate) fn watch(&self) -> Arc<Progress> {
        let progress = Arc::new(Progress::default());
        let mut all = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| r.strong_count() > 0);
        all.push(Arc::downgrade(&progress));
        progress
    }

    /// Cuts the connections of the responses whose message has waited for hyper to ask for
    /// more for [`STUCK_FOR`] or more: their client does not read, and while it does not
    /// the budget is spent. The connection is dropped (with what hyper holds of it); its
    /// streams stay for a resume with `Last-Event-ID`, as after any lost connection. Returns
    /// how many responses were cut.
    pub(crate) fn cut_stuck(&self) -> usize {
        let stuck: Vec<Arc<Progress>> = {
            let mut all = self.responses.lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|r| r.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let mut cut = 0;
        for p in stuck {
            if p.waiting().is_some_and(|w| w >= STUCK_FOR)
                && let Some(token) = p.cut.get()
                && !token.is_cancelled()
            {
                tracing::warn!(budget = %self.name, "a client has not read its response for {} s while it holds more than {} MiB unread: its connection is cut (a stream still kept can be resumed with Last-Event-ID)", STUCK_FOR.as_secs(), QUEUED_BYTES >> 20);
                token.cancel();
                cut += 1;
            }
        }
        cut
    }

    /// Counts `bytes` of a JSON answer about to go out on `connection` until the returned
    /// credit is dropped; the connection is cut like an SSE response's if it holds them
    /// untaken too long ([`Budget::cut_stuck`]).
    pub(crate) fn hold(self: &Arc<Self>, bytes: usize, connection: &CancellationToken) -> Credit {
        let progress = self.watch();
        progress.mark(true);
        let _ = progress.cut.set(connection.clone());
        self.take(bytes);
        Credit {
            budget: self.clone(),
            bytes,
            progress,
        }
    }
}

/// A message of a shared server on its way to its session core, counted against its budget
/// ([`Budget::admit`]) until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.transit.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A whole JSON answer's bytes, counted against its budget from when its response is made
/// until hyper has taken them (the body is asked for more, or dropped): the JSON counterpart
/// of [`Inbox::recv`] ([`Budget::hold`]).
pub(crate) struct Credit {
    budget: Arc<Budget>,
    bytes: usize,
    progress: Arc<Progress>,
}

impl Credit {
    /// `n` more bytes were handed to the connection: given back, as hyper's own buffer (HTTP/1)
    /// or the client's window (HTTP/2) bounds them from there; the response is being read
    /// (see [`STUCK_FOR`]) until nothing is left.
    pub(crate) fn progressed(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.budget.give(n);
        self.bytes -= n;
        self.progress.mark(self.bytes > 0);
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
        self.progress.mark(false);
    }
}

/// The receiving end of a stream. For an SSE stream, each message it takes counts against
/// the budget until its response has handed all of it to hyper ([`Inbox::progressed`]), and
/// what it leaves unread is given back when it is dropped (its client went away).
///
/// Given back at the take, a client that read nothing held one whole message per request in
/// the gateway's connections, past the budget: 150 requests for 4 MB answers nobody read held
/// 582 MiB (found by a hostile pass).
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Line>,
    /// The budget, for an SSE stream (a JSON answer counts once it is made:
    /// [`Budget::hold`]).
    budget: Option<Arc<Budget>>,
    /// Shown each message as it is taken ([`Inbox::observe`]).
    observer: Option<Observer>,
    /// The bytes of the message last taken and not yet handed to hyper.
    held: usize,
    progress: Option<Arc<Progress>>,
}

/// What [`Inbox::observe`] shows each message to.
type Observer = Box<dyn FnMut(&Line) + Send>;

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("budget", &self.budget)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// A stream's receiver; `budget`: an SSE stream's, whose messages count until handed on.
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Line>, budget: Option<Arc<Budget>>) -> Inbox {
        let progress = budget.as_ref().map(|b| b.watch());
        Inbox {
            rx,
            budget,
            observer: None,
            held: 0,
            progress,
        }
    }

    /// Names the connection this stream's response goes out on: the one cut if the response
    /// stops moving while its budget is spent ([`Budget::cut_stuck`]).
    pub(crate) fn attach(self, connection: &CancellationToken) -> Inbox {
        if let Some(p) = &self.progress {
            let _ = p.cut.set(connection.clone());
        }
        self
    }

    /// The next message, `None` once the stream has ended. Being asked for it means the last
    /// one was handed on whole, so that one is given back only now; the new one counts until
    /// its response hands it to hyper ([`Inbox::progressed`]), the next take, or the drop.
    pub(crate) async fn recv(&mut self) -> Option<Line> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Inbox::recv`] for a body's `poll_frame`.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Line>> {
        self.release();
        let polled = self.rx.poll_recv(cx);
        if !matches!(polled, std::task::Poll::Ready(Some(_)))
            && let Some(p) = &self.progress
        {
            // Nothing queued: not waiting on hyper (a message queued later marks it again).
            p.mark(false);
        }
        if let std::task::Poll::Ready(Some(line)) = &polled {
            if self.budget.is_some() {
                self.held = line.1.len();
                if let Some(p) = &self.progress {
                    p.mark(true);
                }
            }
            if let Some(see) = &mut self.observer {
                see(line);
            }
        }
        polled
    }

    /// `n` more bytes of the message last taken went to the connection: given back (hyper's
    /// own buffer or the client's HTTP/2 window bounds them from there); the response is
    /// being read (see [`STUCK_FOR`]) until nothing of it is left.
    pub(crate) fn progressed(&mut self, n: usize) {
        if self.held == 0 {
            return;
        }
        let n = n.min(self.held);
        if let Some(b) = &self.budget {
            b.give(n);
        }
        self.held -= n;
        // Asked now; still waiting on hyper (the rest of this message, or the next one queued)
        // until the next ask finds nothing queued. Cleared when a message had gone whole, a
        // client that stopped reading at a message boundary was never cut (helper-86 #1).
        if let Some(p) = &self.progress {
            p.mark(true);
        }
    }

    /// This stream's response progress, for its stream to mark queued messages
    /// ([`Progress::mark_if_idle`]).
    pub(crate) fn progress(&self) -> Option<Arc<Progress>> {
        self.progress.clone()
    }

    /// Gives back what is left of the message last taken.
    fn release(&mut self) {
        if self.held > 0 {
            if let Some(b) = &self.budget {
                b.give(self.held);
            }
            self.held = 0;
        }
    }

    /// Shows `each` every message as it is taken, in the taker's own call: no task between
    /// the stream and its taker, so the stream stops looking live the moment its taker is
    /// gone (the calls of a JSON answer are recorded as delivered only if it took them).
    pub(crate) fn observe(mut self, each: impl FnMut(&Line) + Send + 'static) -> Inbox {
        self.observer = Some(Box::new(each));
        self
    }

    /// Test access to the channel, bypassing the budget.
    #[cfg(test)]
    pub(crate) fn try_take(&mut self) -> Option<Line> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.release();
        self.rx.close();
        while let Ok((_, line)) = self.rx.try_recv() {
            if let Some(b) = &self.budget {
                b.give(line.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shared_servers_large_messages_wait_while_the_budget_is_spent() {
        // helper-85 F1: a shared server's answers were read whole into the session cores
        // before any budget applied (1.1 GB for 64 unread answers of 16 MB).
        let budget = Budget::new("test".into());
        let big = QUEUED_BYTES;
        let first = budget.admit(big).await;
        // Counted while on its way: the next large one is an overdraft, granted at once
        // (none before), and the one after waits for its share of the span.
        let second = budget.admit(big).await;
        let started = Instant::now();
        let third = budget.admit(big).await;
        assert!(
            started.elapsed() >= OVERDRAFT_SPAN,
            "a large message went on while the budget was spent: {:?}",
            started.elapsed()
        );
        // A quarter of the budget waits a quarter of the span.
        let started = Instant::now();
        let quarter = budget.admit(big / 4).await;
        let waited = started.elapsed();
        assert!(
            waited >= OVERDRAFT_SPAN && waited < OVERDRAFT_SPAN + Duration::from_secs(1),
            "after a whole budget's overdraft, the next waits a span: {waited:?}"
        );
        drop((first, second, third, quarter));
        assert_eq!(budget.transit.load(Ordering::Acquire), 0, "all given back");
        // Spent by responses (not by what is on its way): a small message goes at once, a
        // large one waits for its turn.
        budget.take(2 * QUEUED_BYTES);
        let started = Instant::now();
        let small = budget.admit(100).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "small messages pass");
        let large = budget.admit(big).await;
        assert!(
            started.elapsed() >= OVERDRAFT_SPAN / 4,
            "the quarter's share of the span first: {:?}",
            started.elapsed()
        );
        // Room again: no wait.
        budget.give(2 * QUEUED_BYTES);
        drop((small, large));
        let started = Instant::now();
        drop(budget.admit(big).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(budget.transit.load(Ordering::Acquire), 0, "all given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_cuts_a_stuck_response_without_more_output() {
        // helper-83 F4: the cut ran only when the session had another message to deliver,
        // so a session that got large answers and went quiet kept them.
        let budget = Budget::new("test".into());
        let (tx, rx) = mpsc::unbounded_channel();
        let connection = CancellationToken::new();
        let mut inbox = Inbox::new(rx, Some(budget.clone())).attach(&connection);
        budget.take(2 * QUEUED_BYTES);
        tx.send((1, Bytes::from(vec![b'x'; 2 * QUEUED_BYTES])))
            .unwrap();
        assert!(inbox.recv().await.is_some());
        inbox.progressed(64 * 1024);
        tokio::time::sleep(STUCK_FOR - Duration::from_secs(2)).await;
        assert!(!connection.is_cancelled(), "not stuck long enough yet");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(connection.is_cancelled(), "cut with no more output");
        drop(inbox);
        assert_eq!(budget.used(), 0, "everything given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_between_messages_is_cut() {
        // helper-86 #1: a message handed to hyper whole cleared the mark, so a client that
        // stopped reading at a message boundary, more queued behind it, was never cut.
        let budget = Budget::new("test".into());
        let (tx, rx) = mpsc::unbounded_channel();
        let connection = CancellationToken::new();
        let mut inbox = Inbox::new(rx, Some(budget.clone())).attach(&connection);
        let other = budget.hold(2 * QUEUED_BYTES, &CancellationToken::new());
        budget.take(10);
        tx.send((1, Bytes::from_static(b"0123456789"))).unwrap();
        assert!(inbox.recv().await.is_some());
        inbox.progressed(10);
        budget.take(10);
        tx.send((2, Bytes::from_static(b"0123456789"))).unwrap();
        tokio::time::sleep(STUCK_FOR + Duration::from_secs(2)).await;
        assert!(
            connection.is_cancelled(),
            "not asked for the next message: cut"
        );
        drop((inbox, other));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_that_keeps_being_read_is_not_cut() {
        let budget = Budget::new("test".into());
        let connection = CancellationToken::new();
        let mut credit = budget.hold(4 * QUEUED_BYTES, &connection);
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            credit.progressed(64 * 1024);
        }
        assert!(!connection.is_cancelled());
        drop(credit);
        assert_eq!(budget.used(), 0);
        // Under budget the watchdog ends: a response stuck for long is left alone.
        tokio::time::sleep(WATCH_EVERY * 2).await;
        assert!(
            !budget.watching.load(Ordering::Acquire),
            "the watchdog ended"
        );
        let idle = CancellationToken::new();
        let small = budget.hold(1024, &idle);
        tokio::time::sleep(STUCK_FOR * 3).await;
        assert!(!idle.is_cancelled(), "under budget nothing is cut");
        drop(small);
    }
}
