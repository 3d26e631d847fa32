//! What a line is read as: through a copy where lone surrogate escapes are U+FFFD
//! ([`crate::jsonrpc::surrogates`]), forwarding the original; and the HTTP context of the
//! gateway request being fed.

use bytes::Bytes;

use super::{Pipeline, Route};
use crate::jsonrpc::FrameError;

/// Routes `readable` (the same length as `original`, every byte in place but the lone
/// surrogate escapes) with `route`, then puts back the original bytes wherever what is
/// forwarded is `readable` or a slice of it (the whole line, as almost every message goes):
/// the peer gets what was sent. Messages the proxy made or rebuilt (its answers, a masked
/// result, a batch without the elements it took, a call held for confirmation and sent
/// later) carry U+FFFD where the lone surrogates were.
pub(super) fn read_as(
    original: Bytes,
    readable: Vec<u8>,
    route: impl FnOnce(Bytes) -> Route,
) -> Route {
    let readable = Bytes::from(readable);
    restore(route(readable.clone()), &readable, &original)
}

fn restore(route: Route, readable: &Bytes, original: &Bytes) -> Route {
    let put_back = |mut out: super::Outbound| {
        let (start, end) = (
            readable.as_ptr() as usize,
            readable.as_ptr() as usize + readable.len(),
        );
        let at = out.bytes.as_ptr() as usize;
        if !out.bytes.is_empty() && at >= start && at + out.bytes.len() <= end {
            out.bytes = original.slice(at - start..at - start + out.bytes.len());
        }
        out
    };
    match route {
        Route::ToServer(out) => Route::ToServer(put_back(out)),
        Route::ToClient(out) => Route::ToClient(put_back(out)),
        Route::Many(routes) => Route::Many(
            routes
                .into_iter()
                .map(|r| restore(r, readable, original))
                .collect(),
        ),
        other => other,
    }
}

impl Pipeline {
    /// [`Pipeline::from_client`] for a request that came with its own HTTP context (client
    /// address, user agent, trace id): the events of the calls it starts record it instead of
    /// the session's.
    pub fn from_client_at(
        &self,
        line: Bytes,
        http: Box<crate::audit::event::HttpContext>,
    ) -> Route {
        self.with_request_http(http, || self.from_client(line))
    }

    /// [`Pipeline::client_frame_error`] for a request that came over HTTP with `http`.
    pub fn refuse_frame_at(
        &self,
        e: &FrameError,
        http: Box<crate::audit::event::HttpContext>,
    ) -> Route {
        self.with_request_http(http, || self.client_frame_error(e))
    }

    /// Runs `route` with `http` as the context of the request being fed.
    fn with_request_http(
        &self,
        http: Box<crate::audit::event::HttpContext>,
        route: impl FnOnce() -> Route,
    ) -> Route {
        let _one_at_a_time = self.feeding.lock().unwrap_or_else(|p| p.into_inner());
        *self.request_http.lock().unwrap_or_else(|p| p.into_inner()) = Some(http);
        let route = route();
        *self.request_http.lock().unwrap_or_else(|p| p.into_inner()) = None;
        route
    }

    /// The HTTP context of the request being fed, else the session's.
    pub(super) fn request_http(&self) -> Option<Box<crate::audit::event::HttpContext>> {
        self.request_http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| self.info.http.clone())
    }
}
