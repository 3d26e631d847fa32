//! The proxy's own log lines: formatted on the calling thread, queued without blocking, and
//! written by a thread of their own, to stderr or to `log.file`.
//!
//! Why: a log write is a syscall that blocks when its pipe is full. The stdio path runs on one
//! runtime thread, so a client that never reads our stderr (a full 64 KiB pipe after a few
//! hundred alerts) stalled every MCP message, and a client that closed its end made
//! tracing-subscriber's fallback `eprintln!` panic (exit 101) at the first line. Here the
//! calling thread only formats the line and `try_send`s it: a line that does not fit the queue
//! is dropped and counted, never waited for. The writer thread alone waits on the output; it
//! reports the count when lines flow again (at most every [`REPORT_EVERY`]) and at exit.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use tracing_subscriber::fmt::MakeWriter;

/// Lines queued for the writer thread (a line is one event, typically 150-300 bytes); past
/// this, new lines are dropped and counted.
pub const QUEUE_LINES: usize = 1024;
/// The shortest time between two reports of dropped lines while running.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long exit waits for queued lines (and the last report) to be written.
pub const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `log.file` cannot be opened for appending.
    #[error("cannot open the log file {} (log.file in {}): {source}\n  hint: create its folder or make the file writable, or remove log.file from [log] to log to stderr", path.display(), config.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// The config file that names it.
        config: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error(
        "cannot start the log writer thread: {0}\n  hint: the system is out of threads or memory; retry, or raise the process limits"
    )]
    Thread(io::Error),
}

/// Where log lines go.
#[derive(Debug)]
pub enum Output {
    /// This process's stderr (the default).
    Stderr,
    /// A file opened by [`open_file`].
    File(File),
}

/// Opens `log.file` for appending (created with mode 0600 if missing: lines name users and
/// tools), so that a path that cannot be written stops the proxy at start instead of losing
/// every line.
pub fn open_file(path: &Path, config: &Path) -> Result<File, LogError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let failed = |source: io::Error| LogError::Open {
        path: path.to_path_buf(),
        config: config.to_path_buf(),
        source,
    };
    // Opened non-blocking, so that a named pipe with no reader fails at once (ENXIO) instead
    // of hanging the start; then blocking again, since only the writer thread writes to it.
    let file = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(failed)?;
    let flags = fcntl(&file, FcntlArg::F_GETFL).map_err(|e| failed(e.into()))?;
    let blocking = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(blocking)).map_err(|e| failed(e.into()))?;
    Ok(file)
}

/// Makes sure file descriptors 0, 1 and 2 are open (on `/dev/null` if they were closed), before
/// anything else opens a file: otherwise the next file opened (the audit journal, say) would get
/// fd 2, and every log line or panic message would be written into it. Rust's runtime already
/// does this on Linux before `main`; this does not depend on it. Returns false if a standard
/// descriptor is closed and cannot be filled: the caller must not go on.
pub fn keep_standard_fds_open() -> bool {
    for _ in 0..3 {
        match File::options().read(true).write(true).open("/dev/null") {
            // The lowest free descriptor was a standard one: keep it filled.
            Ok(f) if f.as_raw_fd() <= 2 => {
                let _ = f.into_raw_fd();
            }
            Ok(_) => return true,
            Err(_) => {
                let open = |fd: std::os::fd::BorrowedFd<'_>| {
                    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
                };
                return open(io::stdin().as_fd())
                    && open(io::stdout().as_fd())
                    && open(io::stderr().as_fd());
            }
        }
    }
    true
}

/// Writes `text` to stderr from a helper thread and waits at most [`FLUSH_AT_EXIT`]: a last
/// error message must not keep the process alive when nobody reads stderr.
pub fn print_to_stderr(text: String) {
    let (done, wait) = mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("stderr".into())
        .spawn(move || {
            let _ = io::stderr().write_all(text.as_bytes());
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = wait.recv_timeout(FLUSH_AT_EXIT);
    }
}

enum Msg {
    Line(Vec<u8>),
    /// Wakes an idle writer at exit.
    Close,
}

/// Rewrites a log line whose text holds a secret or a card number (`None`: leave it as it is).
pub type Mask = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The mask every line goes through before it is written, once the policy is loaded.
static MASK: std::sync::RwLock<Option<Mask>> = std::sync::RwLock::new(None);

/// Masks every later log line with `mask`, on the writer thread (off the message path). Why:
/// log lines name request ids and tool names, which a client can fill with a secret or a card
/// number; the trail stores those protected ([`crate::policy::PolicyCell::log_mask`]), and
/// stderr or `log.file` must not keep them in clear either.
pub fn mask_with(mask: Mask) {
    *MASK.write().unwrap_or_else(|p| p.into_inner()) = Some(mask);
}

/// `line` as it may be written.
fn masked(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mask = MASK.read().unwrap_or_else(|p| p.into_inner()).clone();
    match (mask, std::str::from_utf8(line)) {
        // A panic in the mask must not end the writer thread (every later line lost): the
        // line is then withheld, and a notice written in its place.
        (Some(mask), Ok(text)) => {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mask(text))) {
                Ok(Some(out)) => std::borrow::Cow::Owned(out.into_bytes()),
                Ok(None) => std::borrow::Cow::Borrowed(line),
                Err(_) => std::borrow::Cow::Borrowed(
                    b"(a log line withheld: masking it failed)\n".as_slice(),
                ),
            }
        }
        _ => std::borrow::Cow::Borrowed(line),
    }
}

/// `text` as it may be shown on a terminal: every control character but a line feed and a tab
/// (C0, DEL, and the C1 controls U+0080–U+009F, ECMA-48 §5) and every bidirectional
/// formatting character (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069: Unicode
/// UAX #9; "Trojan Source", CVE-2021-42574) written as `\u001b`, `\u202e`; the rest as it
/// is (invalid UTF-8 included). The escape is JSON's (RFC 8259 §7), so JSON text stays
/// valid JSON meaning the same, while serde_json writes DEL and C1 raw.
///
/// Why: user names, tool names, arguments and servers' messages are chosen by clients and
/// servers, and an escape sequence written raw to a log or a table can erase a line, rewrite
/// it, move the cursor or set the terminal's title: the operator would read what an attacker
/// wrote, not what happened (log injection, CWE-117 and CWE-150).
pub fn printable(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let control = |at: usize| -> Option<usize> {
        let next = |k: usize| text.get(at + k).copied();
        match text[at] {
            b'\n' | b'\t' => None,
            0x00..=0x1f | 0x7f => Some(1),
            0xc2 if matches!(next(1), Some(0x80..=0x9f)) => Some(2),
            // U+061C ARABIC LETTER MARK.
            0xd8 if next(1) == Some(0x9c) => Some(2),
            // U+200E, U+200F, U+202A–U+202E.
            0xe2 if next(1) == Some(0x80) && matches!(next(2), Some(0x8e | 0x8f | 0xaa..=0xae)) => {
                Some(3)
            }
            // U+2066–U+2069.
            0xe2 if next(1) == Some(0x81) && matches!(next(2), Some(0xa6..=0xa9)) => Some(3),
            _ => None,
        }
    };
    if !(0..text.len()).any(|at| control(at).is_some()) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut at = 0;
    while at < text.len() {
        match control(at) {
            Some(1) => {
                out.extend_from_slice(format!("\\u{:04x}", text[at]).as_bytes());
                at += 1;
            }
            Some(n) => {
                // The code point of a 2- or 3-byte UTF-8 sequence.
                let point = match n {
                    2 => (u32::from(text[at] & 0x1f) << 6) | u32::from(text[at + 1] & 0x3f),
                    _ => {
                        (u32::from(text[at] & 0x0f) << 12)
                            | (u32::from(text[at + 1] & 0x3f) << 6)
                            | u32::from(text[at + 2] & 0x3f)
                    }
                };
                out.extend_from_slice(format!("\\u{point:04x}").as_bytes());
                at += n;
            }
            None => {
                out.push(text[at]);
                at += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` as one cell of a table or one line of a listing: what [`printable`] escapes, and
/// also line breaks (U+2028, U+2029 too), tabs, backslashes and the invisible characters
/// (U+00AD, U+034F, U+180E, U+200B–U+200D, U+2060–U+2064, the variation selectors
/// U+FE00–U+FE0F, U+FEFF, the tags U+E0000–U+E007F), each written as a JSON-style escape
/// (`\n`, `\\`, `\u200b`). Why: a tool or user name is the client's to choose, and one
/// holding a line feed would print a row of its own in `analyze` or `events` (a forged line,
/// CWE-117), one holding a zero-width space (`echo\u200b`) would read as another tool
/// (helper-94 F2).
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\t'
                | '\\'
                | '\u{ad}'
                | '\u{34f}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200d}'
                | '\u{2028}'..='\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{e0000}'..='\u{e007f}'
        )
    };
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // So that a name holding the text `echo\u200b` does not read as one holding the
            // character.
            '\\' => out.push_str("\\\\"),
            c if hidden(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A writer that passes what it is given through [`printable`]: the output of the commands
/// (tables, summaries, JSON, a report on standard output), where the store's user and tool
/// names are shown to a person. CSV, report files and exports are written exactly instead.
pub struct Printable<W: Write>(pub W);

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&printable(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[derive(Default)]
struct Shared {
    /// Lines dropped (queue full) or not written (output failed), since start.
    dropped: AtomicU64,
    closing: AtomicBool,
}

/// The writer tracing-subscriber formats into: one `write_all` per event, one queued line.
#[derive(Clone)]
struct Queue {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl Queue {
    fn push(&self, line: &[u8]) {
        if self.tx.try_send(Msg::Line(line.to_vec())).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Write for &Queue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = &'a Queue;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// The running log writer. Dropping it (or [`Logging::finish`]) writes what is queued, with a
/// last report of dropped lines, waiting at most [`FLUSH_AT_EXIT`].
pub struct Logging {
    queue: Queue,
    done: Receiver<()>,
}

impl Logging {
    /// Starts the writer thread and installs the global subscriber (level from `RUST_LOG`,
    /// default `info`) and a panic hook that logs through the queue.
    pub fn start(output: Output) -> Result<Logging, LogError> {
        let out: Box<dyn Write + Send> = match output {
            Output::Stderr => Box::new(io::stderr()),
            Output::File(f) => Box::new(f),
        };
        let logging = Logging::spawn(out, QUEUE_LINES)?;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let installed = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(logging.queue.clone())
            // No colours: every control character in a line is escaped ([`printable`]),
            // colour sequences included.
            .with_ansi(false)
            // Its fallback is `eprintln!`, which panics when stderr is broken; our writer
            // never fails anyway.
            .log_internal_errors(false)
            .try_init();
        if installed.is_ok() {
            let queue = logging.queue.clone();
            std::panic::set_hook(Box::new(move |info| {
                // The default hook writes to stderr directly, and would block on a full pipe.
                let backtrace = std::backtrace::Backtrace::capture();
                let thread = std::thread::current();
                let line = format!(
                    "{} ERROR panic: thread '{}' {info}\n{}",
                    humantime::format_rfc3339_micros(SystemTime::now()),
                    thread.name().unwrap_or("<unnamed>"),
                    match backtrace.status() {
                        std::backtrace::BacktraceStatus::Captured => format!("{backtrace}\n"),
                        _ => String::new(),
                    }
                );
                if queue.shared.closing.load(Ordering::Acquire) {
                    // The writer thread is done (or being waited for): nothing reads the queue.
                    print_to_stderr(line);
                } else {
                    queue.push(line.as_bytes());
                }
            }));
        }
        Ok(logging)
    }

    /// The writer thread over `out`, with a queue of `lines`.
    fn spawn(mut out: Box<dyn Write + Send>, lines: usize) -> Result<Logging, LogError> {
        let (tx, rx) = mpsc::sync_channel(lines);
        let (done_tx, done) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                write_lines(&rx, &mut *out, &for_thread);
                let _ = done_tx.send(());
            })
            .map_err(LogError::Thread)?;
        Ok(Logging {
            queue: Queue { tx, shared },
            done,
        })
    }

    /// Lines dropped so far: the queue was full, or the output failed.
    pub fn dropped_lines(&self) -> u64 {
        self.queue.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and the last report of dropped lines (bounded by
    /// [`FLUSH_AT_EXIT`]); returns the number of lines dropped.
    pub fn finish(self) -> u64 {
        self.close();
        self.dropped_lines()
    }

    fn close(&self) {
        let shared = &self.queue.shared;
        if shared.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        // A busy writer sees `closing` after its batch; an idle one needs waking.
        let _ = self.queue.tx.try_send(Msg::Close);
        let _ = self.done.recv_timeout(FLUSH_AT_EXIT);
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: writes batches of lines, reports drops, ends once closing and drained.
fn write_lines(rx: &Receiver<Msg>, out: &mut dyn Write, shared: &Shared) {
    let write = |out: &mut dyn Write, line: &[u8]| {
        if out.write_all(&printable(&masked(line))).is_err() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut reported = 0;
    let mut last_report: Option<Instant> = None;
    loop {
        match rx.recv_timeout(REPORT_EVERY) {
            Ok(Msg::Line(line)) => write(out, &line),
            Ok(Msg::Close) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Line(line) = msg {
                write(out, &line);
            }
        }
        let closing = shared.closing.load(Ordering::Acquire);
        let dropped = shared.dropped.load(Ordering::Relaxed);
        let due = last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
        if dropped > reported && (due || closing) {
            // Written here, not logged: no filter may hide it, and the queue may be full.
            let line = format!(
                "{}  WARN mcp_audit_proxy::telemetry: log lines dropped dropped={} total={dropped} hint=\"the log output did not keep up (is stderr read?); set log.file in [log]\"\n",
                humantime::format_rfc3339_micros(SystemTime::now()),
                dropped - reported,
            );
            write(out, line.as_bytes());
            reported = dropped;
            last_report = Some(Instant::now());
        }
        let _ = out.flush();
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// helper-94 F2 and review helper-97: what a table cell shows of a client's name.
    #[test]
    fn one_line_shows_breaks_invisibles_and_backslashes_escaped() {
        assert!(matches!(
            one_line("echo"),
            std::borrow::Cow::Borrowed("echo")
        ));
        assert_eq!(one_line("a\nroot x"), "a\\nroot x");
        assert_eq!(one_line("echo\u{200b}"), "echo\\u200b");
        // The text `echo\u200b` is not shown as the character is.
        assert_eq!(one_line("echo\\u200b"), "echo\\\\u200b");
        assert_eq!(
            one_line("a\u{2028}b\u{e0041}c\u{fe0f}"),
            "a\\u2028b\\ue0041c\\ufe0f"
        );
        assert_eq!(one_line("tab\there"), "tab\\there");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        let shown = |t: &str| String::from_utf8(printable(t.as_bytes()).into_owned()).unwrap();
        assert_eq!(
            shown("echo\u{1b}[2K\r\u{1b}]0;pwned\u{7}ok"),
            "echo\\u001b[2K\\u000d\\u001b]0;pwned\\u0007ok"
        );
        // C1 CSI (U+009B) and DEL; line feeds, tabs and other non-ASCII stay.
        assert_eq!(shown("a\u{9b}31m\u{7f}b"), "a\\u009b31m\\u007fb");
        assert_eq!(shown("line\n\tcafé ☕ Ā\n"), "line\n\tcafé ☕ Ā\n");
        assert!(matches!(printable(b"plain"), std::borrow::Cow::Borrowed(_)));
        let mut out = Printable(Vec::new());
        let (a, b) = ("x\u{1b}[8m", "y");
        write!(out, "{a}|{b}").unwrap();
        assert_eq!(out.0, b"x\\u001b[8m|y");
        // Bidirectional formatting (helper-90: a tool named with U+202E showed reversed):
        // each one escaped; the letters of right-to-left scripts and other U+20xx stay.
        assert_eq!(
            shown("read\u{202e}txt.exe\u{2066}\u{2069}\u{200f}\u{61c}"),
            "read\\u202etxt.exe\\u2066\\u2069\\u200f\\u061c"
        );
        assert_eq!(shown("שלום — ‘x’ …"), "שלום — ‘x’ …");
        // JSON stays JSON, meaning the same.
        let value = serde_json::json!({"tool": "a\u{85}\u{7f}\u{1b}b\u{202e}c"});
        let shown = printable(value.to_string().as_bytes()).into_owned();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&shown).unwrap(),
            value
        );
    }

    /// An output that blocks until `gate` opens, then collects into `into`.
    struct Gated {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        into: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.into.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_never_blocks_the_caller_and_drops_are_reported_at_exit() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let into = Arc::new(Mutex::new(Vec::new()));
        let out = Gated {
            gate: gate.clone(),
            into: into.clone(),
        };
        let logging = Logging::spawn(Box::new(out), 16).unwrap();
        let started = Instant::now();
        for i in 0..10_000 {
            logging.queue.push(format!("line {i}\n").as_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "pushing took {:?}",
            started.elapsed()
        );
        // At most the queue and the line the writer holds got through.
        let dropped = logging.dropped_lines();
        assert!((10_000 - 17..=10_000 - 16).contains(&dropped), "{dropped}");
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        assert_eq!(logging.finish(), dropped);
        let text = String::from_utf8(into.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("line 0\n"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(
            last.contains("log lines dropped")
                && last.contains(&format!("dropped={dropped} total={dropped}")),
            "{last}"
        );
        assert_eq!(text.lines().count() as u64, 10_000 - dropped + 1);
    }

    #[test]
    fn a_failing_output_counts_its_lines_as_dropped() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let logging = Logging::spawn(Box::new(Broken), 16).unwrap();
        logging.queue.push(b"lost\n");
        // The line and the report of it both fail.
        assert!(logging.finish() >= 1);
    }

    #[test]
    fn finish_is_bounded_when_the_output_never_returns() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Gated {
            gate,
            into: Arc::new(Mutex::new(Vec::new())),
        };
        let logging = Logging::spawn(Box::new(out), 4).unwrap();
        logging.queue.push(b"stuck\n");
        let started = Instant::now();
        logging.finish();
        let took = started.elapsed();
        assert!(
            took >= FLUSH_AT_EXIT && took < FLUSH_AT_EXIT + Duration::from_millis(500),
            "{took:?}"
        );
    }
}
