//! The proxy: one pipeline per client connection, fed by a front door: the stdio
//! wrapper (`stdio.rs`) or the HTTP gateway (`http/`); `reload.rs` reloads the policy (and the
//! gateway's credentials) on SIGHUP and file changes.

pub mod fdio;
pub mod http;
pub mod pipeline;
pub(crate) mod pool;
pub(crate) mod reload;
pub mod remote;
pub mod stdio;
pub mod warden;

pub use pipeline::{Ended, Outbound, Pipeline, Route, SessionInfo};

/// Waits for a signal whose default action would end the process (SIGTERM, SIGINT, SIGQUIT,
/// SIGUSR1, SIGUSR2, SIGALRM; SIGKILL cannot be caught, SIGHUP reloads the policy) and names
/// it, so that both front doors end in order instead: calls in flight get their events, the
/// journal is synced, and no server process outlives the proxy. Never resolves when the
/// handlers cannot be installed (logged).
///
/// The handlers are installed by this call, not when the future is first polled: a signal
/// sent as soon as the proxy says it is ready (a test reading "listening on", a supervisor)
/// found no handler while the future waited for its first poll, and ended the process at
/// once, without the drain (CI saw the gateway die so). Call it within the runtime, before
/// saying ready. Needs a Tokio runtime.
pub(crate) fn termination_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::alarm()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1), Ok(mut usr2), Ok(mut alarm)) =
            handlers
        else {
            tracing::warn!(
                "signal handlers unavailable; SIGTERM will end the proxy without a clean shutdown"
            );
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = quit.recv() => "SIGQUIT",
            _ = usr1.recv() => "SIGUSR1",
            _ = usr2.recv() => "SIGUSR2",
            _ = alarm.recv() => "SIGALRM",
        }
    }
}
