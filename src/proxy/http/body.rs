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
use tokio::sync::mpsc;

/// The body type of every gateway response.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).boxed_unsync()
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
    rx: mpsc::UnboundedReceiver<(u64, Bytes)>,
    stream: u64,
    _guard: OnDrop,
}

impl EventStream {
    /// A stream of `first` (if any), then the lines `rx` gives, each `(sequence, line)`;
    /// event ids are `<stream>-<sequence>`, which `Last-Event-ID` resumes from.
    pub(crate) fn body(
        first: Option<(u64, Bytes)>,
        rx: mpsc::UnboundedReceiver<(u64, Bytes)>,
        stream: u64,
        keepalive: std::time::Duration,
        guard: OnDrop,
    ) -> ResponseBody {
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        EventStream {
            keepalive,
            first,
            rx,
            stream,
            _guard: guard,
        }
        .boxed_unsync()
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.first.take() {
            Some(line) => Poll::Ready(Some(line)),
            None => self.rx.poll_recv(cx),
        };
        match next {
            Poll::Ready(Some((seq, line))) => {
                let mut event = BytesMut::with_capacity(line.len() + 64);
                event.put_slice(
                    format!("id: {}-{seq}\nevent: message\ndata: ", self.stream).as_bytes(),
                );
                event.put_slice(&line);
                event.put_slice(b"\n\n");
                Poll::Ready(Some(Ok(Frame::data(event.freeze()))))
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
