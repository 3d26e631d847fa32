//! A bounded Server-Sent Events parser for what a remote MCP server streams back (WHATWG HTML,
//! "Server-sent events", 9.2.6 "Interpreting an event stream").
//!
//! Why not a crate: the ones at hand (`sse-stream`, `eventsource-stream`) buffer an event of
//! any size (a hostile server could exhaust memory; the proxy caps every message at
//! `limits.max_message_bytes`), and `sse-stream` rejects lines the standard accepts (a field
//! without a colon, a repeated `event:` line). This one follows the standard's algorithm,
//! byte for byte, with a cap.

use bytes::{Bytes, BytesMut};

/// One dispatched event: the `data` of an event whose type is `message` (the only type MCP
/// sends), and the last event id seen so far (for `Last-Event-ID` on reconnection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The data lines joined by `\n`, as the standard builds them.
    pub(crate) data: Bytes,
    /// The event's type (`message` unless an `event:` field said otherwise).
    pub(crate) kind: String,
}

/// An event or a line past the cap.
#[derive(Debug, thiserror::Error)]
#[error("an SSE event of the upstream is larger than limits.max_message_bytes ({max} bytes)")]
pub(crate) struct TooLarge {
    pub(crate) max: usize,
}

/// The parser's state between chunks.
#[derive(Debug)]
pub(crate) struct Parser {
    max: usize,
    line: BytesMut,
    data: BytesMut,
    kind: Option<String>,
    /// The last event id buffer: set by `id:`, kept across events.
    pub(crate) last_id: Option<String>,
    /// `retry:` in milliseconds, if the server set one.
    pub(crate) retry_ms: Option<u64>,
    /// The previous chunk ended in `\r`: a `\n` starting this one belongs to it.
    after_cr: bool,
    /// Nothing read yet: a leading BOM is dropped.
    first: bool,
}

impl Parser {
    /// A parser that refuses events and lines longer than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Parser {
            max,
            line: BytesMut::new(),
            data: BytesMut::new(),
            kind: None,
            last_id: None,
            retry_ms: None,
            after_cr: false,
            first: true,
        }
    }

    /// Feeds a chunk of the stream; complete events go to `out`.
    pub(crate) fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if self.first && !chunk.is_empty() {
            // The BOM may itself be split; a stream that starts with part of one is broken
            // anyway, and the bytes then go to the first line as they are.
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
            self.first = false;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match memchr::memchr2(b'\n', b'\r', chunk) {
                Some(at) => {
                    if self.line.len() + at > self.max {
                        return Err(TooLarge { max: self.max });
                    }
                    self.line.extend_from_slice(&chunk[..at]);
                    let ended_by_cr = chunk[at] == b'\r';
                    chunk = &chunk[at + 1..];
                    if ended_by_cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    let line = self.line.split().freeze();
                    self.line_done(&line, out)?;
                }
                None => {
                    if self.line.len() + chunk.len() > self.max {
                        return Err(TooLarge { max: self.max });
                    }
                    self.line.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, mut value) = match memchr::memchr(b':', line) {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &[][..]),
        };
        if let Some(rest) = value.strip_prefix(b" ") {
            value = rest;
        }
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(TooLarge { max: self.max });
                }
                self.data.extend_from_slice(value);
                self.data.extend_from_slice(b"\n");
            }
            b"event" => self.kind = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let kind = self.kind.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = self.data.split();
        data.truncate(data.len() - 1);
        out.push(Event {
            data: data.freeze(),
            kind: kind.unwrap_or_else(|| "message".to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(stream: &[u8], chunk: usize) -> (Vec<Event>, Option<String>) {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            p.push(c, &mut out).unwrap();
        }
        (out, p.last_id)
    }

    #[test]
    fn events_are_the_same_however_the_stream_is_cut() {
        let stream = b"\xEF\xBB\xBF: keep-alive\r\nid: 7-1\r\ndata: {\"a\":1}\r\n\r\nevent: message\rdata: {\"b\":\rdata: 2}\r\rid: 7-2\nretry: 500\ndata\n\nevent: other\ndata: x\n\ndata: tail\n\n";
        let (whole, id) = parse_in_chunks(stream, stream.len());
        let datas: Vec<&[u8]> = whole.iter().map(|e| &e.data[..]).collect();
        // A `data` line without a colon is a data field with an empty value: its event is
        // dispatched with empty data, as the standard says.
        let expected: Vec<&[u8]> = vec![b"{\"a\":1}", b"{\"b\":\n2}", b"", b"x", b"tail"];
        assert_eq!(datas, expected);
        assert_eq!(id.as_deref(), Some("7-2"));
        assert_eq!(whole[3].kind, "other");
        for size in 1..stream.len() {
            let (cut, id) = parse_in_chunks(stream, size);
            assert_eq!(cut, whole, "chunks of {size}");
            assert_eq!(id.as_deref(), Some("7-2"));
        }
    }

    #[test]
    fn an_event_past_the_cap_is_refused() {
        let mut p = Parser::new(64);
        let mut out = Vec::new();
        let big = format!("data: {}\n", "x".repeat(40));
        p.push(big.as_bytes(), &mut out).unwrap();
        assert!(p.push(big.as_bytes(), &mut out).is_err());
        let mut p = Parser::new(64);
        assert!(p.push("y".repeat(65).as_bytes(), &mut out).is_err());
        assert!(out.is_empty());
    }
}
