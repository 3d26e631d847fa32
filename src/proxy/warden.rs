//! The warden: a small second process that ends the servers' process groups when the proxy
//! cannot, because it was killed with SIGKILL (by a client's close sequence that ran out of
//! patience, the OOM killer, `kill -9`). Issue 7 item 5: nothing the proxy started may
//! outlive it.
//!
//! Why a process: a server runs in a process group of its own ([`super::stdio`]), out of
//! reach of the signals its client sends the proxy, and `PR_SET_PDEATHSIG` would need code
//! run between `fork` and `exec` (`pre_exec`, `unsafe`, which the crate forbids), would reach
//! only the server itself (not what it started), and fires when the forking *thread* ends.
//!
//! How: the proxy modes start `mcp-audit-proxy warden` (a hidden subcommand) once per
//! process ([`enable`], [`start`]), in a process group of its own, its stdin a pipe whose only writer is the proxy.
//! The proxy writes `+PGID\n` when it starts a server and `-PGID\n` once that group has
//! ended or been killed ([`watch`], [`release`]). When the proxy ends, however it ends, the
//! kernel closes the pipe; the warden reads EOF and, for each group still listed that still
//! has a process, sends SIGTERM, waits up to [`GRACE`], then SIGKILL ([`serve`]). After a
//! normal exit every group has been released and the warden leaves at once, without a word.
//!
//! Not covered: processes a server started in a session or group of its own (`setsid`),
//! which the proxy adopts as their reaper while it lives ([`super::stdio::adopt_orphans`])
//! but which go to the next reaper when it is killed; and the warden itself being killed
//! first. The library used in-process (tests, embedders) starts no warden unless its host
//! calls [`enable`].

use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Between the warden's SIGTERM and its SIGKILL. The proxy is already gone, and with it the
/// server's input and output: there is nothing left to deliver, only a moment to exit
/// cleanly (the same second the proxy gives a server after a termination signal).
pub const GRACE: Duration = Duration::from_secs(1);

/// How often the warden looks whether a group it signalled is empty.
const POLL: Duration = Duration::from_millis(20);

/// The subcommand the binary runs the warden as (hidden from `--help`).
pub const SUBCOMMAND: &str = "warden";

/// The running warden, as the proxy sees it.
struct Warden {
    pid: u32,
    /// Non-blocking: a stopped warden must never stall the proxy (a lost line is logged).
    pipe: ChildStdin,
}

static WARDEN: Mutex<Option<Warden>> = Mutex::new(None);

fn warden() -> std::sync::MutexGuard<'static, Option<Warden>> {
    WARDEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`start`] runs: this binary's own path, set by the binary's `main` for the proxy
/// modes (`Err`: its path could not be read, reported when the mode starts).
static PROGRAM: std::sync::OnceLock<io::Result<PathBuf>> = std::sync::OnceLock::new();

/// Lets [`start`] run the warden as `program warden`. The binary calls it with
/// `std::env::current_exe()`; the library used in-process never does (a test harness's own
/// executable must not be re-run).
pub fn enable(program: io::Result<PathBuf>) {
    let _ = PROGRAM.set(program);
}

/// Starts the warden, if [`enable`]d, before the first server starts: `program warden`, in a
/// process group of its own (so that a signal to the proxy's group, a terminal's Ctrl-C, does
/// not end it before the proxy), stdout to `/dev/null` (never the client's MCP channel),
/// stderr shared with the proxy (its one line when it acts). A second call does nothing.
///
/// A failure (the program cannot be started, its pipe cannot be made non-blocking) is logged
/// as a warning and the proxy runs on without one: its own exit paths end the groups; only a
/// SIGKILL of the proxy would leave them.
pub fn start() {
    let Some(program) = PROGRAM.get() else {
        return;
    };
    let program = match program {
        Ok(path) => path,
        Err(e) => {
            tracing::warn!(error = %e, "no warden: the proxy's own executable cannot be found; if the proxy is killed with SIGKILL, what its mcp servers started may outlive it");
            return;
        }
    };
    if let Err(e) = spawn(program) {
        tracing::warn!(program = %program.display(), error = %e, "no warden: it could not be started; if the proxy is killed with SIGKILL, what its mcp servers started may outlive it");
    }
}

fn spawn(program: &Path) -> io::Result<()> {
    let mut slot = warden();
    if slot.is_some() {
        return Ok(());
    }
    let mut child = Command::new(program)
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let pipe = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the warden's stdin pipe is missing"))?;
    let flags = fcntl(pipe.as_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(
        pipe.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(io::Error::from)?;
    // Never waited for: it outlives this process by design (if it ends first,
    // [`super::stdio::reap_orphans`] reaps it).
    tracing::debug!(pid = child.id(), "warden started");
    *slot = Some(Warden {
        pid: child.id(),
        pipe,
    });
    Ok(())
}

/// The warden's pid, if one runs: a child of this process that is neither a server nor an
/// orphan to end at exit.
pub(crate) fn pid() -> Option<i32> {
    warden().as_ref().map(|w| w.pid as i32)
}

/// Tells the warden that `group` (a server's process group id) must end with the proxy.
pub(crate) fn watch(group: i32) {
    tell(b'+', group);
}

/// Tells the warden that `group` has ended or was killed: its id may be reused from now on.
pub(crate) fn release(group: i32) {
    tell(b'-', group);
}

fn tell(sign: u8, group: i32) {
    let mut slot = warden();
    let Some(w) = slot.as_mut() else {
        return;
    };
    let line = format!("{}{group}\n", sign as char);
    // One write of a few bytes to a pipe is atomic (< PIPE_BUF): all of it or none.
    match w.pipe.write(line.as_bytes()) {
        Ok(n) if n == line.len() => {}
        Ok(_) | Err(_) if sign == b'-' => {
            tracing::debug!(
                pgid = group,
                "the warden was not told that a process group ended"
            );
        }
        result => {
            let error = match result {
                Ok(_) => "short write".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(pgid = group, %error, warden = w.pid, "the warden was not told about an mcp server's process group; if the proxy is killed with SIGKILL, what that server started may outlive it");
        }
    }
}

/// The warden's own work, in the warden process: reads `+PGID` and `-PGID` lines from
/// `input` until EOF (the proxy has ended), then ends the groups still listed that have a
/// process left: SIGTERM, up to [`GRACE`], SIGKILL. Returns the exit status: 0 when nothing
/// was left, 1 when it had to end something (each group named on stderr), 2 on a line it
/// cannot read (what it read before still counts).
pub fn serve(input: impl BufRead) -> i32 {
    let mut groups = HashSet::new();
    let mut status = 0;
    for line in input.split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let parsed = text
            .get(1..)
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|g| *g > 1);
        match (line.first(), parsed) {
            (Some(b'+'), Some(group)) => {
                groups.insert(group);
            }
            (Some(b'-'), Some(group)) => {
                groups.remove(&group);
            }
            _ => {
                crate::telemetry::print_to_stderr(format!(
                    "mcp-audit-proxy warden: ignored a line it cannot read: {text:?}\n"
                ));
                status = 2;
            }
        }
    }
    let left: Vec<Pid> = groups
        .into_iter()
        .map(Pid::from_raw)
        .filter(|g| alive(*g))
        .collect();
    if left.is_empty() {
        return status;
    }
    for group in &left {
        let _ = killpg(*group, Signal::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    let mut remaining: Vec<Pid> = left.clone();
    while !remaining.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
        remaining.retain(|g| alive(*g));
    }
    for group in &remaining {
        let _ = killpg(*group, Signal::SIGKILL);
    }
    // Written after acting: a stderr nobody reads must not delay the signals.
    let name = |gs: &[Pid]| {
        gs.iter()
            .map(|g| g.as_raw().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "mcp-audit-proxy warden: the proxy ended without ending its mcp servers (killed?); sent SIGTERM to process group(s) {}",
        name(&left)
    );
    if !remaining.is_empty() {
        text.push_str(&format!(
            ", and SIGKILL to {} after {} ms",
            name(&remaining),
            GRACE.as_millis()
        ));
    }
    text.push('\n');
    crate::telemetry::print_to_stderr(text);
    1
}

/// Whether any process of `group` is left that is not a zombie. A zombie server waits for
/// its new parent to reap it (the proxy that would have is gone) and needs no signal.
fn alive(group: Pid) -> bool {
    if killpg(group, None).is_err() {
        return false;
    }
    // The group exists: is any member more than a zombie? Read from /proc; when it cannot be
    // read, assume yes (a signal to a group of zombies does no harm).
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    let wanted = group.as_raw().to_string();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.get(2) == Some(&wanted.as_str())
                && fields
                    .first()
                    .is_some_and(|s| !s.starts_with('Z') && !s.starts_with('X'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process group of its own running `sleep`, whose group id is its pid.
    fn sleeper(script: &str) -> std::process::Child {
        Command::new("sh")
            .args(["-c", script])
            .process_group(0)
            .spawn()
            .expect("sh")
    }

    fn wait_gone(child: &mut std::process::Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        false
    }

    #[test]
    fn a_group_still_listed_at_eof_is_ended_and_a_released_one_is_not() {
        let mut kept = sleeper("sleep 600");
        let mut released = sleeper("sleep 600");
        let input = format!("+{}\n+{}\n-{}\n", kept.id(), released.id(), released.id());
        assert_eq!(serve(input.as_bytes()), 1, "it had something to end");
        assert!(wait_gone(&mut kept), "the listed group was not ended");
        assert!(
            released.try_wait().expect("try_wait").is_none(),
            "a released group was signalled"
        );
        let _ = released.kill();
        let _ = released.wait();
    }

    #[test]
    fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
        let mut stubborn = sleeper("trap '' TERM; sleep 600 & wait; sleep 600");
        // Let the shell install its trap before the signal.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        assert_eq!(serve(format!("+{}\n", stubborn.id()).as_bytes()), 1);
        assert!(
            wait_gone(&mut stubborn),
            "a stubborn group outlived the warden"
        );
        assert!(
            started.elapsed() >= GRACE,
            "SIGKILL came before the grace: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn nothing_left_is_a_quiet_exit_and_a_bad_line_is_reported() {
        assert_eq!(serve(&b""[..]), 0);
        // A group id that no process has: nothing to end.
        assert_eq!(serve(&b"+2147483000\n"[..]), 0);
        assert_eq!(serve(&b"*12\n"[..]), 2);
        // `+0` would be the warden's own group and `+1` init's: never taken.
        assert_eq!(serve(&b"+1\n"[..]), 2);
    }
}
