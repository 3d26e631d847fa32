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
//! ended or been killed ([`watch`], [`release`]); a list told again to a replacement warden
//! carries each leader's start time (`+PGID:TICKS`). When the proxy ends, however it ends, the
//! kernel closes the pipe; the warden reads EOF and, for each group still listed that still
//! has a process, sends SIGTERM, waits up to [`GRACE`], then SIGKILL ([`serve`]), and says so
//! in one line on its stderr: the proxy's, or `log.file` when the mode logs there. After a
//! normal exit every group has been released and the warden leaves at once, without a word.
//!
//! A warden that exits while the proxy runs (killed by hand, the OOM killer) is replaced: a
//! thread of the proxy waits for it, starts a new one and tells it of every group still
//! listed ([`keep_watch`]); one that keeps dying within [`SHORT_LIFE`] of its start is given
//! up after [`RESTARTS`] tries, with a warning.
//!
//! Not covered: processes a server started in a session or group of its own (`setsid`),
//! which the proxy adopts as their reaper while it lives ([`super::stdio::adopt_orphans`])
//! but which go to the next reaper when it is killed; and the warden and the proxy being
//! killed together (a SIGKILL to both, or within the moment a new warden takes to start).
//! The library used in-process (tests, embedders) starts no warden unless its host calls
//! [`enable`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// Between the warden's SIGTERM and its SIGKILL: the second the proxy gives a server after
/// a termination signal. The proxy is already gone, and with it the server's input and
/// output: there is nothing left to deliver, only a moment to exit cleanly.
pub const GRACE: Duration = super::stdio::SIGNALLED_GRACE;

/// How often the warden looks whether a group it signalled is empty.
const POLL: Duration = super::stdio::GROUP_POLL;

/// The subcommand the binary runs the warden as (hidden from `--help`).
pub const SUBCOMMAND: &str = "warden";

/// How many wardens in a row may exit within [`SHORT_LIFE`] of their start before the proxy
/// stops starting new ones: something ends each at once (a broken binary, a watchdog that
/// kills it), and starting more would only spin.
pub const RESTARTS: u32 = 5;

/// A warden that lived longer than this before it exited is replaced whatever came before.
pub const SHORT_LIFE: Duration = Duration::from_secs(10);

/// The running warden, as the proxy sees it.
struct Warden {
    pid: u32,
    /// Non-blocking: a stopped warden must never stall the proxy.
    pipe: ChildStdin,
    /// Lines a full pipe did not take, written first at the next [`tell`] (a `-` lost
    /// would leave a group listed whose id may be reused).
    unsent: Vec<u8>,
    /// The groups told with `+` and not yet with `-`, each with its leader's start time
    /// when told: what a new warden is told when this one exits ([`keep_watch`]), as
    /// `+PGID:TICKS`, so that it judges a reused id against the leader the proxy started,
    /// not whatever holds the id when it is told.
    listed: BTreeMap<i32, Option<u64>>,
}

static WARDEN: Mutex<Option<Warden>> = Mutex::new(None);

fn warden() -> std::sync::MutexGuard<'static, Option<Warden>> {
    WARDEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// What [`start`] runs: this binary's own path, set by the binary's `main` for the proxy
/// modes (`Err`: its path could not be read, reported when the mode starts).
static PROGRAM: std::sync::OnceLock<io::Result<PathBuf>> = std::sync::OnceLock::new();

/// Where the warden's stderr goes when the mode logs to `log.file` (else the proxy's stderr).
static LOG: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

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
///
/// `log`: `log.file` opened for appending, if the mode logs there: the warden's line goes
/// there too (its stderr), like the proxy's own lines.
pub fn start(log: Option<std::fs::File>) {
    let Some(program) = PROGRAM.get() else {
        return;
    };
    if let Some(file) = log {
        let _ = LOG.set(file);
    }
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
    let (pid, pipe) = launch(program)?;
    tracing::debug!(pid, "warden started");
    *slot = Some(Warden {
        pid,
        pipe,
        unsent: Vec::new(),
        listed: BTreeMap::new(),
    });
    drop(slot);
    let program = program.to_path_buf();
    if let Err(e) = std::thread::Builder::new()
        .name("warden-watch".into())
        .spawn(move || keep_watch(&program, pid))
    {
        tracing::warn!(error = %e, "the warden runs, but no thread watches it: if it exits, it is not replaced");
    }
    Ok(())
}

/// Starts one warden process: its pid and the non-blocking write end of its stdin.
fn launch(program: &Path) -> io::Result<(u32, ChildStdin)> {
    // No environment: it needs none, and the proxy's own secrets (kept from the servers,
    // `Config::own_secret_vars`) have no business there either.
    let mut child = Command::new(program)
        .arg(SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(
            LOG.get()
                .and_then(|f| f.try_clone().ok())
                .map_or_else(Stdio::inherit, Stdio::from),
        )
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
    // Never waited for by `child`: [`keep_watch`] waits for it by its pid.
    Ok((child.id(), pipe))
}

/// The `warden-watch` thread: waits for the warden `pid` to exit (and reaps it, a child of
/// this process), then starts a new one and tells it of every group still listed, for the
/// proxy's whole life. Gives up, with a warning, when the warden cannot be started or
/// [`RESTARTS`] wardens in a row exited within [`SHORT_LIFE`].
fn keep_watch(program: &Path, mut pid: u32) {
    let mut born = Instant::now();
    let mut short_lives = 0;
    loop {
        let status = loop {
            match waitpid(Pid::from_raw(pid as i32), None) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        short_lives = match born.elapsed() < SHORT_LIFE {
            true => short_lives + 1,
            false => 0,
        };
        let mut slot = warden();
        let Some(w) = slot.as_mut() else { return };
        if short_lives >= RESTARTS {
            tracing::warn!(pid, status = ?status, "the warden exited again, {RESTARTS} times within {} s of its start: no new one is started; if the proxy is killed with SIGKILL, what its mcp servers started may outlive it", SHORT_LIFE.as_secs());
            *slot = None;
            return;
        }
        match launch(program) {
            Ok((new, pipe)) => {
                w.pid = new;
                w.pipe = pipe;
                // What the old one was told, in one list: `-` lines it missed are moot.
                w.unsent = w
                    .listed
                    .iter()
                    .map(|(&g, &started)| listed_line(g, started))
                    .collect::<String>()
                    .into_bytes();
                let told = flush(w);
                tracing::warn!(old = pid, new, status = ?status, groups = w.listed.len(), told = told.is_ok(), "the warden exited while the proxy runs; started a new one and told it of the mcp servers' process groups");
                pid = new;
                born = Instant::now();
            }
            Err(e) => {
                tracing::warn!(pid, status = ?status, program = %program.display(), error = %e, "the warden exited and no new one could be started; if the proxy is killed with SIGKILL, what its mcp servers started may outlive it");
                *slot = None;
                return;
            }
        }
    }
}

/// The warden's pid, if one runs: a child of this process that is neither a server nor an
/// orphan to end at exit.
pub(crate) fn pid() -> Option<i32> {
    warden().as_ref().map(|w| w.pid as i32)
}

/// The line that lists `group` to a warden: `+PGID:TICKS` with its leader's start time as the
/// proxy read it, so that the warden judges a reused id against that leader; `+PGID` when it
/// could not be read (the warden reads it then).
fn listed_line(group: i32, started: Option<u64>) -> String {
    match started {
        Some(t) => format!("+{group}:{t}\n"),
        None => format!("+{group}\n"),
    }
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
    let line = match sign {
        b'+' => {
            let started = started_at(group);
            w.listed.insert(group, started);
            listed_line(group, started)
        }
        _ => {
            w.listed.remove(&group);
            format!("-{group}\n")
        }
    };
    w.unsent.extend_from_slice(line.as_bytes());
    if let Err(e) = flush(w) {
        // Full (the warden is stopped) or gone (a new one is told of every listed group when
        // [`keep_watch`] starts it): kept for the next time, bounded.
        if w.unsent.len() > 64 * 1024 {
            w.unsent.clear();
        }
        tracing::warn!(pgid = group, error = %e, warden = w.pid, "the warden was not told about an mcp server's process group (kept for the next time); if the proxy is killed with SIGKILL, what that server started may outlive it");
    }
}

/// Writes what the warden has not been told yet, whole lines only (a pipe takes a write of
/// up to PIPE_BUF, 4096 bytes, all or nothing). `Err`: the pipe is full or has no reader; the
/// rest stays in `unsent`.
fn flush(w: &mut Warden) -> io::Result<()> {
    while !w.unsent.is_empty() {
        let mut end = w.unsent.len().min(4096);
        while w.unsent[end - 1] != b'\n' {
            end -= 1;
        }
        match w.pipe.write(&w.unsent[..end]) {
            Ok(n) => {
                w.unsent.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The warden's own work, in the warden process: reads `+PGID` and `-PGID` lines from
/// `input` until EOF (the proxy has ended), then ends the groups still listed that have a
/// process left: SIGTERM, up to [`GRACE`], SIGKILL. Returns the exit status: 0 when nothing
/// was left, 1 when it had to end something (each group named on stderr), 2 on a line it
/// cannot read (what it read before still counts).
pub fn serve(input: impl BufRead) -> i32 {
    // Each group with its leader's start time when told of it: a group id is a pid, and once
    // the group has ended a new process may get it.
    let mut groups = HashMap::new();
    let mut status = 0;
    for line in input.split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        // `+PGID`, `+PGID:TICKS` (a list told again to a new warden: the leader's start time
        // as the proxy read it when the server started), `-PGID`.
        let (id, ticks) = match text.get(1..).map(|rest| rest.split_once(':')) {
            Some(Some((id, ticks))) => (Some(id), ticks.parse::<u64>().ok().map(Some)),
            Some(None) => (text.get(1..), Some(None)),
            None => (None, None),
        };
        let parsed = id.and_then(|n| n.parse::<i32>().ok()).filter(|g| *g > 1);
        match (line.first(), parsed, ticks) {
            (Some(b'+'), Some(group), Some(told)) => {
                groups.insert(group, told.or_else(|| started_at(group)));
            }
            (Some(b'-'), Some(group), Some(None)) => {
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
        .filter(|(group, started)| ours(*group, *started))
        .map(|(group, _)| Pid::from_raw(group))
        .filter(|g| alive(*g))
        .collect();
    if left.is_empty() {
        return status;
    }
    let mut refused = Vec::new();
    for group in &left {
        if let Err(e) = killpg(*group, Signal::SIGTERM) {
            refused.push(format!("{group}: {e}"));
        }
    }
    let deadline = Instant::now() + GRACE;
    let mut remaining: Vec<Pid> = left.clone();
    while !remaining.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
        remaining.retain(|g| alive(*g));
    }
    for group in &remaining {
        if let Err(e) = killpg(*group, Signal::SIGKILL) {
            refused.push(format!("{group}: {e}"));
        }
    }
    // Written after acting: a stderr nobody reads must not delay the signals.
    let name = |gs: &[Pid]| {
        gs.iter()
            .map(|g| g.as_raw().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The proxy's log line form: it may go to `log.file` among them.
    let mut text = format!(
        "{}  WARN mcp_audit_proxy::proxy::warden: the proxy ended without ending its mcp servers (killed?); sent SIGTERM to process group(s) {}",
        humantime::format_rfc3339_micros(std::time::SystemTime::now()),
        name(&left)
    );
    if !remaining.is_empty() {
        text.push_str(&format!(
            ", and SIGKILL to {} after {} ms",
            name(&remaining),
            GRACE.as_millis()
        ));
    }
    if !refused.is_empty() {
        text.push_str(&format!("; refused: {}", refused.join(", ")));
    }
    text.push('\n');
    crate::telemetry::print_to_stderr(text);
    1
}

/// The start time of process `pid` (`/proc/PID/stat` field 22, clock ticks after boot), if
/// it runs.
fn started_at(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state …`: field 22 is the 20th after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether `group` is still the one the proxy started: its leader is the process it was
/// (same start time), or has exited while the group lives on (Linux gives no process an id
/// still in use as a process group's). A leader replaced by another process with the same
/// id means the group ended and the id was reused: never signalled.
fn ours(group: i32, started: Option<u64>) -> bool {
    match (started, started_at(group)) {
        (Some(then), Some(now)) => then == now,
        _ => true,
    }
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
    let mut members = 0;
    let mut zombies = 0;
    for stat in dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
    {
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.get(2) == Some(&wanted.as_str()) {
            members += 1;
            if fields
                .first()
                .is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
            {
                zombies += 1;
            }
        }
    }
    // Fail closed: a group the kernel has but /proc does not show (another pid namespace's
    // procfs) is signalled.
    members == 0 || members > zombies
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
    fn a_group_whose_leader_id_was_reused_is_not_ours() {
        let mut child = sleeper("sleep 600");
        let pid = child.id() as i32;
        let started = started_at(pid);
        assert!(started.is_some(), "the start time of a running process");
        assert!(ours(pid, started), "the same process");
        assert!(
            !ours(pid, started.map(|t| t + 1)),
            "another process with the same id"
        );
        // Unknown then, or gone now: signalled (fail closed; a gone leader's id is not
        // reused while its group lives).
        assert!(ours(pid, None));
        let _ = child.kill();
        let _ = child.wait();
        assert!(ours(pid, started), "the leader is gone");
    }

    /// helper-91 L1: a list told again to a replacement warden carries the start times the
    /// proxy read when the servers started; a group whose leader is another process by now
    /// is left alone, whatever holds the id when the new warden is told.
    #[test]
    fn a_start_time_told_with_the_group_is_the_one_judged() {
        let mut child = sleeper("sleep 600");
        let pid = child.id();
        let started = started_at(pid as i32).expect("a running process");
        assert_eq!(serve(format!("+{pid}:{}\n", started + 1).as_bytes()), 0);
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "another process's group was signalled"
        );
        assert_eq!(serve(format!("+{pid}:{started}\n").as_bytes()), 1);
        assert!(wait_gone(&mut child), "its own group was not ended");
        assert_eq!(serve(&b"+12:x\n-12:5\n"[..]), 2);
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
