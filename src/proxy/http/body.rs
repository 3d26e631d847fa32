//! Response bodies: a whole JSON document, or a Server-Sent Events stream fed by a channel
//! (WHATWG HTML "Server-sent events"; MCP "Streamable HTTP" sends one JSON-RPC message per
//! event).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;

/// The body type of every gateway response.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// The most of a message a response hands hyper at once. hyper asks an HTTP/1 body for more
/// only once its buffer is down to about 400 KiB, but over HTTP/2 it asks again as soon as
/// the stream's flow-control window takes one byte, buffering the whole frame beyond it (a
/// hostile pass held 1.8 GB on one connection of paused streams); with frames this small it
/// buffers at most the client's window and one frame (RFC 9113 section 5.2), the rest waits
/// here, counted, and the asks show the pace a slow reader keeps.
const CHUNK: usize = 64 * 1024;

/// The next at most [`CHUNK`] bytes of `pending` (shared, not copied).
fn next_chunk(pending: &mut Bytes) -> Bytes {
    pending.split_to(pending.len().min(CHUNK))
}

/// A complete body (`Content-Length` as [`full`]), handed on [`CHUNK`] bytes at a time, each
/// given back to the session's budget as hyper takes it ([`super::budget::Credit`]): what
/// hyper has not asked for yet counts, and its connection is cut if it stops asking.
pub(crate) fn counted(bytes: Bytes, credit: super::budget::Credit) -> ResponseBody {
    Counted {
        size: bytes.len() as u64,
        data: bytes,
        credit: Some(credit),
    }
    .boxed_unsync()
}

struct Counted {
    data: Bytes,
    size: u64,
    credit: Option<super::budget::Credit>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.data.is_empty() {
            let chunk = next_chunk(&mut self.data);
            if let Some(c) = &mut self.credit {
                c.progressed(chunk.len());
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        self.credit = None;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// Runs when the stream ends or the client goes away (the body is dropped).
pub(crate) struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> Self {
        OnDrop(Some(Box::new(f)))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// An SSE stream: each line received becomes one `message` event with an id, until the
/// channel closes.
pub(crate) struct EventStream {
    /// Ticks for the keep-alive comment: HTTP/1 only sees a client gone when it writes, so
    /// a quiet stream writes a comment now and then (a 2026-07-28 call is cancelled when
    /// its stream closes, and must learn of it while it runs).
    keepalive: tokio::time::Interval,
    first: Option<(u64, Bytes)>,
    rx: super::budget::Inbox,
    /// What is left of the event being sent, handed on [`CHUNK`] bytes at a time: its `id`
    /// and `data:` prefix, the message itself (shared with the stream's replay window, not
    /// copied: a framed copy of each held message doubled what a session held, uncounted),
    /// and the blank line that ends it.
    pending: std::collections::VecDeque<Bytes>,
    stream: u64,
    /// Still to send: the priming event (an id and empty data, MCP 2025-11-25 "Sending
    /// Messages to the Server": a client cut before the first message can resume from it).
    prime: bool,
    _guard: OnDrop,
}

impl EventStream {
    /// A stream of `first` (if any), then the lines `rx` gives, each `(sequence, line)`;
    /// event ids are `<stream>-<sequence>`, which `Last-Event-ID` resumes from. `prime`:
    /// begin with the priming event `<stream>-0` (sequences start at 1, so resuming from it
    /// replays everything).
    pub(crate) fn body(
        first: Option<(u64, Bytes)>,
        rx: super::budget::Inbox,
        stream: u64,
        (keepalive, prime): (std::time::Duration, bool),
        guard: OnDrop,
    ) -> ResponseBody {
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        EventStream {
            keepalive,
            first,
            rx,
            pending: std::collections::VecDeque::new(),
            stream,
            prime,
            _guard: guard,
        }
        .boxed_unsync()
    }
}

impl EventStream {
    /// The next at most [`CHUNK`] bytes of the event being sent (never an empty frame), each
    /// counted as handed on.
    fn next_pending(&mut self) -> Option<Bytes> {
        while let Some(front) = self.pending.front_mut() {
            if front.is_empty() {
                self.pending.pop_front();
                continue;
            }
            let chunk = next_chunk(front);
            if front.is_empty() {
                self.pending.pop_front();
            }
            self.rx.progressed(chunk.len());
            return Some(chunk);
        }
        None
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.prime {
            self.prime = false;
            let event = format!("id: {}-0\ndata: \n\n", self.stream);
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))));
        }
        if let Some(chunk) = self.next_pending() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let next = match self.first.take() {
            Some(line) => Poll::Ready(Some(line)),
            None => self.rx.poll_recv(cx),
        };
        match next {
            Poll::Ready(Some((seq, line))) => {
                let prefix = format!("id: {}-{seq}\nevent: message\ndata: ", self.stream);
                if line.len() <= CHUNK {
                    // One frame: a small copy costs less than two more frames.
                    let mut event = BytesMut::with_capacity(prefix.len() + line.len() + 2);
                    event.put_slice(prefix.as_bytes());
                    event.put_slice(&line);
                    event.put_slice(b"\n\n");
                    self.pending.push_back(event.freeze());
                } else {
                    self.pending.push_back(Bytes::from(prefix));
                    self.pending.push_back(line);
                    self.pending.push_back(Bytes::from_static(b"\n\n"));
                }
                match self.next_pending() {
                    Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.keepalive.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n\n"))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// How many times `gateway.header_read_timeout_ms` a whole request body may take to arrive.
pub(crate) const BODY_DEADLINE_FACTOR: u32 = 6;

/// Why a request body was not read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyReadError {
    #[error("the request body is larger than limits.max_message_bytes ({max} bytes)")]
    TooLarge {
        max: usize,
        /// What the key scanner read of the body before the limit (its id, method and the
        /// tool a `params` names), for the refusal's events; the body itself is not kept.
        prefix: crate::jsonrpc::scan::PrefixInfo,
    },
    #[error(
        "the request body stalled: nothing of it arrived for {idle_ms} ms (gateway.header_read_timeout_ms); send the body without pauses"
    )]
    Stalled { idle_ms: u128 },
    #[error(
        "the request body did not arrive whole within {total_ms} ms ({BODY_DEADLINE_FACTOR} x gateway.header_read_timeout_ms); send it faster, or smaller"
    )]
    TooSlow { total_ms: u128 },
    #[error("the request body could not be read: {0}")]
    Read(String),
}

/// Reads a request body whole: at most `max` bytes, no pause longer than `idle` between its
/// pieces and all of it within `total` (a client trickling its body, slowloris-style, holds
/// a connection and a stream slot only that long).
///
/// A body over `max` is refused ([`BodyReadError::TooLarge`]) with what the key scanner read
/// of its head; one whose declared length is over `max` is refused after at most
/// [`HEAD_BYTES`] of it (within the same deadlines), so that its refusal still names the
/// call it was; or unread, without `head_if_too_large`.
pub(crate) async fn read_request_body<B>(
    mut body: B,
    max: usize,
    idle: std::time::Duration,
    total: std::time::Duration,
    head_if_too_large: bool,
) -> Result<Bytes, BodyReadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared_too_large = body.size_hint().lower() > max as u64;
    if declared_too_large && !head_if_too_large {
        return Err(BodyReadError::TooLarge {
            max,
            prefix: Default::default(),
        });
    }
    let limit = if declared_too_large {
        HEAD_BYTES.min(max)
    } else {
        max
    };
    // Read once, on this error path only: the message's head usually comes first (`id`,
    // `method`, `params.name`), so the refused call is recorded by its tool.
    let too_large = |read: &[&[u8]]| {
        let mut scanner = crate::jsonrpc::scan::KeyScanner::default();
        // The head only: a body cut at `max` (16 MiB) is not walked byte by byte.
        let mut left = HEAD_BYTES;
        for bytes in read {
            let head = &bytes[..bytes.len().min(left)];
            scanner.feed(head);
            left -= head.len();
        }
        BodyReadError::TooLarge {
            max,
            prefix: scanner.finish(),
        }
    };
    let deadline = tokio::time::Instant::now() + total;
    let mut out = BytesMut::new();
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(match declared_too_large {
                true => too_large(&[&out]),
                false => BodyReadError::TooSlow {
                    total_ms: total.as_millis(),
                },
            });
        }
        let wait = idle.min(deadline - now);
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            // A body declared too large is refused as such, whatever became of its head.
            _ if declared_too_large => return Err(too_large(&[&out])),
            Ok(Some(Err(e))) => return Err(BodyReadError::Read(e.to_string())),
            Ok(None) => return Ok(out.freeze()),
            Err(_) if wait < idle => {
                return Err(BodyReadError::TooSlow {
                    total_ms: total.as_millis(),
                });
            }
            Err(_) => {
                return Err(BodyReadError::Stalled {
                    idle_ms: idle.as_millis(),
                });
            }
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(too_large(&[&out, &data]));
            }
            out.put_slice(&data);
        }
    }
}

/// How much of a body declared larger than `limits.max_message_bytes` is read for its head
/// before it is refused (its `id`, `method` and tool come first in what clients send).
pub(crate) const HEAD_BYTES: usize = 64 * 1024;

/// A response body that holds `guard` until it is sent or dropped.
struct Guarded {
    inner: ResponseBody,
    _guard: OnDrop,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, running `guard` once it is sent whole or dropped.
pub(crate) fn guarded(body: ResponseBody, guard: OnDrop) -> ResponseBody {
    Guarded {
        inner: body,
        _guard: guard,
    }
    .boxed_unsync()
}

/// How much of a refused request's body is read and thrown away before the refusal is
/// sent ([`settle`]), in bytes and in time.
pub(crate) const SETTLE_BYTES: usize = 1 << 20;
/// See [`SETTLE_BYTES`].
pub(crate) const SETTLE_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a request body (at most `limit` bytes, for at most
/// `within`) before a response that refuses the request is sent (HTTP/2 only: the caller
/// decides).
///
/// On HTTP/2 a response sent while the client is still sending resets the stream: hyper drops
/// the unread body, and clients (curl among them, error 92) then report a framing error and
/// never show the 401 and its `WWW-Authenticate` challenge, the start of OAuth discovery (RFC
/// 9113 section 8.1 lets the server stop the upload, but clients differ). A body past the
/// bound, or slower, is left unread as before.
pub(crate) async fn settle<B>(body: B, limit: usize, within: std::time::Duration)
where
    B: Body + Unpin,
{
    if body.is_end_stream() {
        return;
    }
    let read = async {
        let mut body = body;
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += bytes::Buf::remaining(data);
                if seen > limit {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
}
