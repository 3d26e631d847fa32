//! Non-blocking stdin/stdout when they are pipes or sockets (the normal case under an MCP
//! client), so each read and write is one syscall on the runtime thread instead of a hop
//! through tokio's blocking pool. Terminals and files keep tokio's blocking stdio.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

/// Whether the stdio wrapper has started reading its client's stdin ([`mark_client_read`]).
static CLIENT_READ: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called when the client's stdin is handed to the session's reader: from then on, what the
/// client sent belongs to the session, and nothing else may read it.
pub fn mark_client_read() {
    CLIENT_READ.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the client's stdin is still unread by the proxy: a wrapper that failed before its
/// session started may answer the client's first request with its error (`main`).
pub fn client_unread() -> bool {
    !CLIENT_READ.load(std::sync::atomic::Ordering::SeqCst)
}

/// Pipe capacity asked for: a 64 KiB default makes every larger message a series of
/// write-block-wake rounds, and the proxy doubles the number of pipes on the path.
const PIPE_BYTES: i32 = 1 << 20;

/// Grows a pipe's buffer (best effort: the system's `fs/pipe-max-size` may be lower).
pub fn grow_pipe(fd: impl AsFd) {
    if let Err(e) = fcntl(fd.as_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        tracing::debug!(error = %e, "pipe buffer stays at its default size");
    }
}

/// Puts a file description's flags back when dropped: it is shared with whoever gave it to us.
#[derive(Debug)]
struct RestoreFlags {
    fd: OwnedFd,
    original: OFlag,
}

impl Drop for RestoreFlags {
    fn drop(&mut self) {
        let _ = fcntl(&self.fd, FcntlArg::F_SETFL(self.original));
    }
}

/// A stream plus the guard that restores its flags after it is gone.
struct Guarded<T> {
    inner: T,
    _restore: RestoreFlags,
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

enum Kind {
    Fifo,
    Socket,
    Other,
}

/// Duplicates `fd` and classifies it; the guard restores the flags of the shared description.
fn open(fd: impl AsFd) -> io::Result<(OwnedFd, Kind, RestoreFlags)> {
    let kind = SFlag::from_bits_truncate(fstat(fd.as_fd())?.st_mode) & SFlag::S_IFMT;
    let kind = if kind == SFlag::S_IFIFO {
        Kind::Fifo
    } else if kind == SFlag::S_IFSOCK {
        Kind::Socket
    } else {
        Kind::Other
    };
    let owned = fd.as_fd().try_clone_to_owned()?;
    let original = OFlag::from_bits_truncate(fcntl(&owned, FcntlArg::F_GETFL)?);
    let restore = RestoreFlags {
        fd: owned.try_clone()?,
        original,
    };
    Ok((owned, kind, restore))
}

fn socket(owned: OwnedFd) -> io::Result<UnixStream> {
    let std = StdUnixStream::from(owned);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

/// `fd` as a non-blocking stream made by `fifo` or `sock`, or `None` if it is neither kind.
fn nonblocking<T>(
    fd: impl AsFd,
    fifo: impl FnOnce(File) -> io::Result<T>,
    sock: impl FnOnce(UnixStream) -> T,
) -> io::Result<Option<Guarded<T>>> {
    let (owned, kind, restore) = open(fd)?;
    let inner = match kind {
        Kind::Fifo => {
            grow_pipe(&owned);
            fifo(File::from(owned))?
        }
        Kind::Socket => sock(socket(owned)?),
        Kind::Other => return Ok(None),
    };
    Ok(Some(Guarded {
        inner,
        _restore: restore,
    }))
}

/// The stream made, or the blocking one when the descriptor is not a pipe or socket.
fn or_blocking<T>(name: &str, made: io::Result<Option<T>>, blocking: impl FnOnce() -> T) -> T {
    match made {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            tracing::debug!(name, "not a pipe or socket; blocking I/O");
            blocking()
        }
        Err(e) => {
            tracing::debug!(name, error = %e, "stays blocking");
            blocking()
        }
    }
}

/// The client's input: a non-blocking pipe or socket when possible, else tokio's stdin.
pub fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    type Reader = Box<dyn AsyncRead + Unpin + Send>;
    let made = nonblocking(
        io::stdin(),
        |f| Ok(Box::new(pipe::Receiver::from_file(f)?) as Reader),
        |s| Box::new(s) as Reader,
    );
    or_blocking(
        "stdin",
        made.map(|g| g.map(|g| Box::new(g) as Reader)),
        || Box::new(tokio::io::stdin()),
    )
}

/// The client's output: a non-blocking pipe or socket when possible, else tokio's stdout.
pub fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    type Writer = Box<dyn AsyncWrite + Unpin + Send>;
    let made = nonblocking(
        io::stdout(),
        |f| Ok(Box::new(pipe::Sender::from_file(f)?) as Writer),
        |s| Box::new(s) as Writer,
    );
    or_blocking(
        "stdout",
        made.map(|g| g.map(|g| Box::new(g) as Writer)),
        || Box::new(tokio::io::stdout()),
    )
}
