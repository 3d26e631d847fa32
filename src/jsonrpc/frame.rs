//! Newline-delimited framing with a size limit.
//!
//! A frame is one line including its terminating `\n`, handed out as a [`Bytes`] slice of the
//! read buffer so it can be forwarded without a copy. A line longer than the limit is skipped
//! as it streams by, never buffered, and refused when it ends; a line holding a carriage
//! return anywhere but before its final `\n` is refused too: peers that split lines on a bare
//! `\r` (Python's universal newlines, Node's readline) would otherwise see two messages where
//! the proxy saw one, and the second would pass unaudited.

use bytes::{Buf, Bytes, BytesMut};

use super::scan::{KeyScanner, PrefixInfo, scan_prefix};

/// Why a frame could not be produced; the framer carries on with the next line afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line is longer than `limits.max_message_bytes`.
    #[error("message exceeds limits.max_message_bytes ({limit} bytes)")]
    Oversized {
        /// The configured limit.
        limit: usize,
        /// The message's top-level `id` and `method`, as far as they could be read.
        prefix: PrefixInfo,
    },
    /// The line holds a carriage return that is not part of its line ending.
    #[error(
        "message contains a carriage return inside the line (at offset {offset}); MCP stdio messages are one line each"
    )]
    EmbeddedCarriageReturn {
        /// Offset of the first carriage return within the line.
        offset: usize,
        /// The line as received (within the size limit), to read what a lenient peer would.
        line: Bytes,
    },
    /// The line is not valid UTF-8, so it cannot be JSON.
    #[error("message is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte within the line.
        offset: usize,
        /// The line as received (within the size limit), to read what a lenient peer would.
        line: Bytes,
    },
}

impl FrameError {
    /// The message's top-level `id` and `method`, as far as they can be read.
    pub fn prefix(&self) -> PrefixInfo {
        match self {
            FrameError::Oversized { prefix, .. } => prefix.clone(),
            FrameError::EmbeddedCarriageReturn { line, .. }
            | FrameError::InvalidUtf8 { line, .. } => scan_prefix(trim_line_end(line)),
        }
    }

    /// The refused line, when it was within the size limit (an oversized one is never kept).
    pub fn line(&self) -> Option<&Bytes> {
        match self {
            FrameError::Oversized { .. } => None,
            FrameError::EmbeddedCarriageReturn { line, .. }
            | FrameError::InvalidUtf8 { line, .. } => Some(line),
        }
    }
}

/// Room a read gets at least: more than a 64 KiB message with its envelope.
const READ_ROOM: usize = 128 * 1024;
/// Lines shorter than this are copied out of the read buffer instead of split off it.
///
/// Why: a line split off shares the buffer's allocation, and while any such line lives (queued
/// for a peer that does not read, or just not written yet) the next [`LineFramer::read_buf`]
/// cannot reuse it and allocates a fresh `READ_ROOM` one. A server writing one small message
/// per read then made the gateway hold one 132 KiB buffer (a resident 4 KiB page of it) per
/// 101-byte message queued: 83,000 queued messages, 8 MB counted, 325 MiB resident
/// (helper-79). A copy keeps the buffer unshared, reused in place read after read; longer
/// lines are still split off (no copy): their buffer was sized to them (at most about twice).
const COPY_BELOW: usize = READ_ROOM;

/// A framer's buffer at its usual size: room for two reads of [`READ_ROOM`].
fn empty_buffer() -> BytesMut {
    BytesMut::with_capacity(2 * READ_ROOM)
}

/// Splits a byte stream into lines; `Ok(None)` means "need more bytes".
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    max: usize,
    /// Bytes already searched for a newline, so a long line is scanned once.
    scanned: usize,
    /// While skipping the rest of an oversized line: what has been read of its top level.
    discarding: Option<KeyScanner>,
}

impl LineFramer {
    /// A framer refusing lines longer than `max_message_bytes` (line ending excluded).
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: empty_buffer(),
            max: max_message_bytes,
            scanned: 0,
            discarding: None,
        }
    }

    /// The buffer to read into; reserve before reading so a read never reallocates mid-line.
    ///
    /// Each read gets room for [`READ_ROOM`] bytes, or as much again as the line pending so
    /// far: a 64 KiB message arrives in one read (with 8 KiB of room it took two, and a new
    /// buffer, for each), and a longer one in a number of reads that grows as its logarithm.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        let room = READ_ROOM.max(self.buf.len());
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(room);
        }
        &mut self.buf
    }

    /// Feeds bytes (for callers that do not read into [`Self::read_buf`]).
    #[cfg(test)]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, `Ok(None)` when more bytes are needed, or an error for a bad line.
    ///
    /// Blank lines (only whitespace) are skipped: they carry no message.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            let found = memchr::memchr(b'\n', &self.buf[self.scanned..]).map(|i| self.scanned + i);
            let Some(end) = found else {
                if let Some(scanner) = &mut self.discarding {
                    scanner.feed(&self.buf);
                    self.fresh_buffer();
                    return Ok(None);
                }
                // A `\r` at the very end may be the start of this line's `\r\n`.
                let pending = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
                if pending > self.max {
                    let mut scanner = KeyScanner::default();
                    scanner.feed(&self.buf);
                    self.discarding = Some(scanner);
                    self.fresh_buffer();
                    return Ok(None);
                }
                self.scanned = self.buf.len();
                return Ok(None);
            };
            let line = if end < COPY_BELOW {
                let line = Bytes::copy_from_slice(&self.buf[..=end]);
                self.buf.advance(end + 1);
                line
            } else {
                let line = self.buf.split_to(end + 1).freeze();
                // What is left shares the allocation sized to this line, and kept it alive
                // (the line's pages resident) after the line was gone: a gateway session
                // idle after one 11 MB answer held 11 MB until it ended, 31 of them 525 MiB
                // (found by a hostile pass). A short rest moves to a buffer of its own (a
                // long one, several lines read at once from a file, is framed soon anyway).
                if self.buf.len() <= READ_ROOM {
                    let mut rest = empty_buffer();
                    rest.extend_from_slice(&self.buf);
                    self.buf = rest;
                }
                line
            };
            self.scanned = 0;
            if let Some(refused) = self.end_oversized(&line) {
                return Err(refused);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            Self::check(self.max, &line)?;
            return Ok(Some(line));
        }
    }

    /// Empties the buffer while an oversized line is skipped; one grown past the usual size
    /// is let go (cleared, it kept `max_message_bytes` or more resident for good).
    fn fresh_buffer(&mut self) {
        if self.buf.capacity() > 2 * READ_ROOM {
            self.buf = empty_buffer();
        } else {
            self.buf.clear();
        }
        self.scanned = 0;
    }

    /// At end of input: the unterminated last line, if any, as a final frame.
    pub fn finish(&mut self) -> Result<Option<Bytes>, FrameError> {
        let line = self.buf.split().freeze();
        self.scanned = 0;
        if let Some(refused) = self.end_oversized(&line) {
            return Err(refused);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Self::check(self.max, &line)?;
        Ok(Some(line))
    }

    /// Ends the skipping of an oversized line with its last bytes: its refusal, if one is due.
    fn end_oversized(&mut self, last: &[u8]) -> Option<FrameError> {
        let mut scanner = self.discarding.take()?;
        scanner.feed(last);
        Some(FrameError::Oversized {
            limit: self.max,
            prefix: scanner.finish(),
        })
    }

    /// A whole line's checks: size, carriage returns, UTF-8.
    fn check(max: usize, line: &Bytes) -> Result<(), FrameError> {
        let body = trim_line_end(line);
        if body.len() > max {
            return Err(FrameError::Oversized {
                limit: max,
                prefix: scan_prefix(body),
            });
        }
        if let Some(offset) = memchr::memchr(b'\r', body) {
            return Err(FrameError::EmbeddedCarriageReturn {
                offset,
                line: line.clone(),
            });
        }
        std::str::from_utf8(line)
            .map(|_| ())
            .map_err(|e| FrameError::InvalidUtf8 {
                offset: e.valid_up_to(),
                line: line.clone(),
            })
    }
}

/// The line without its trailing `\n` or `\r\n`.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_does_not_keep_its_buffer_alive_after_it_is_framed() {
        let mut framer = LineFramer::new(64 << 20);
        let long = format!("{{\"data\":\"{}\"}}\n{{\"next\":", "x".repeat(8 << 20));
        // Read as a peer's pipe gives it: into the framer's own buffer, growing.
        for piece in long.as_bytes().chunks(READ_ROOM) {
            framer.read_buf().extend_from_slice(piece);
        }
        let line = framer.next_frame().unwrap().expect("the long line");
        assert!(line.len() > 8 << 20);
        assert!(
            framer.buf.capacity() <= 2 * READ_ROOM,
            "the framer kept {} bytes of the long line's buffer",
            framer.buf.capacity()
        );
        assert_eq!(
            &framer.buf[..],
            b"{\"next\":",
            "what followed the line is kept"
        );
        // A line past the limit, skipped, leaves no large buffer behind either.
        let mut framer = LineFramer::new(1 << 20);
        for piece in long.as_bytes().chunks(READ_ROOM) {
            framer.read_buf().extend_from_slice(piece);
            let _ = framer.next_frame();
        }
        assert!(
            framer.buf.capacity() <= 2 * READ_ROOM,
            "{}",
            framer.buf.capacity()
        );
    }

    fn frames(framer: &mut LineFramer) -> Vec<Result<Bytes, FrameError>> {
        let mut out = Vec::new();
        loop {
            match framer.next_frame() {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e)),
            }
        }
    }

    #[test]
    fn short_lines_held_do_not_pin_a_buffer_each() {
        // Every line kept alive (queued for a peer that does not read): each read still goes
        // into the one buffer, reused in place.
        let mut f = LineFramer::new(1 << 20);
        let start = f.read_buf().as_ptr() as usize;
        let mut held = Vec::new();
        for i in 0..40_000 {
            let buf = f.read_buf();
            let at = buf.as_ptr() as usize;
            assert!(
                (start..start + 2 * READ_ROOM).contains(&at),
                "read {i} went into a new buffer"
            );
            buf.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes());
            held.push(f.next_frame().unwrap().unwrap());
        }
        assert_eq!(&held[39_999][..], b"{\"n\":39999}\n");
        assert_eq!(&held[0][..], b"{\"n\":0}\n");
    }

    #[test]
    fn splits_lines_and_keeps_the_exact_bytes() {
        let mut f = LineFramer::new(100);
        f.extend(b"{\"a\":1}\r\n{\"b\":2}\n{\"c\"");
        let got = frames(&mut f);
        assert_eq!(
            got,
            vec![
                Ok(Bytes::from_static(b"{\"a\":1}\r\n")),
                Ok(Bytes::from_static(b"{\"b\":2}\n"))
            ]
        );
        f.extend(b":3}\n");
        assert_eq!(frames(&mut f), vec![Ok(Bytes::from_static(b"{\"c\":3}\n"))]);
    }

    #[test]
    fn skips_blank_lines() {
        let mut f = LineFramer::new(100);
        f.extend(b"\n  \r\n{}\n");
        assert_eq!(frames(&mut f), vec![Ok(Bytes::from_static(b"{}\n"))]);
    }

    #[test]
    fn skips_an_oversized_line_without_buffering_and_refuses_it_at_its_end() {
        let mut f = LineFramer::new(16);
        f.extend(br#"{"params":{"#);
        assert_eq!(frames(&mut f), vec![]);
        f.extend(br#""x":"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"#);
        assert_eq!(frames(&mut f), vec![]);
        assert!(f.buf.is_empty(), "the oversized line is not kept");
        f.extend(b"\"},\"method\":\"tools/call\",\"id\":7}\n{\"ok\":1}\n");
        let got = frames(&mut f);
        match &got[0] {
            Err(FrameError::Oversized { limit: 16, prefix }) => {
                assert_eq!(
                    prefix.id.as_ref().map(|id| id.to_string()),
                    Some("7".into())
                );
                assert_eq!(prefix.methods, ["tools/call"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(got[1], Ok(Bytes::from_static(b"{\"ok\":1}\n")));
    }

    #[test]
    fn refuses_a_carriage_return_inside_a_line_but_not_a_crlf_ending() {
        let mut f = LineFramer::new(1000);
        f.extend(b"{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"a\":\r{\"id\":9,\"method\":\"tools/call\"}\r}}\n");
        f.extend(b"{\"a\":1}\r\n");
        let got = frames(&mut f);
        match &got[0] {
            Err(e @ FrameError::EmbeddedCarriageReturn { offset, .. }) => {
                let prefix = e.prefix();
                assert_eq!(*offset, 44);
                assert_eq!(
                    prefix.methods,
                    ["n"],
                    "the outer message, not the smuggled one"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(got[1], Ok(Bytes::from_static(b"{\"a\":1}\r\n")));
        f.extend(b"{\"a\":\r1}");
        assert!(matches!(
            f.finish(),
            Err(FrameError::EmbeddedCarriageReturn { .. })
        ));
    }

    #[test]
    fn a_crlf_line_of_exactly_the_limit_passes_even_when_the_cr_arrives_alone() {
        let mut f = LineFramer::new(8);
        f.extend(b"{\"a\":12}\r");
        assert_eq!(frames(&mut f), vec![]);
        f.extend(b"\n");
        assert_eq!(
            frames(&mut f),
            vec![Ok(Bytes::from_static(b"{\"a\":12}\r\n"))]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        let mut f = LineFramer::new(8);
        f.extend(b"{\"a\":12}\n{\"a\":123}\n");
        let got = frames(&mut f);
        assert_eq!(got[0], Ok(Bytes::from_static(b"{\"a\":12}\n")));
        assert!(matches!(got[1], Err(FrameError::Oversized { .. })));
    }

    #[test]
    fn refuses_invalid_utf8() {
        let mut f = LineFramer::new(100);
        f.extend(b"{\"a\":\"\xff\"}\n{}\n");
        let got = frames(&mut f);
        assert!(matches!(
            &got[0],
            Err(FrameError::InvalidUtf8 { offset: 6, line }) if &line[..] == b"{\"a\":\"\xff\"}\n"
        ));
        assert_eq!(got[1], Ok(Bytes::from_static(b"{}\n")));
    }

    #[test]
    fn finish_returns_an_unterminated_last_line() {
        let mut f = LineFramer::new(100);
        f.extend(b"{}\n{\"last\":true}");
        assert_eq!(frames(&mut f), vec![Ok(Bytes::from_static(b"{}\n"))]);
        assert_eq!(f.finish(), Ok(Some(Bytes::from_static(b"{\"last\":true}"))));
        assert_eq!(f.finish(), Ok(None));
    }
}
