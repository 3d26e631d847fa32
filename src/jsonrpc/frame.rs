//! Newline-delimited framing with a size limit.
//!
//! A frame is one line including its terminating `\n`, handed out as a [`Bytes`] slice of the
//! read buffer so it can be forwarded without a copy. Lines longer than the limit are refused
//! as soon as the limit is crossed, and the rest of the line is skipped without buffering it.

use bytes::{Bytes, BytesMut};

use super::scan::{PrefixInfo, scan_prefix};

/// Why a frame could not be produced; the framer carries on with the next line afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line grew past `limits.max_message_bytes` before its newline arrived.
    #[error("message exceeds limits.max_message_bytes ({limit} bytes)")]
    Oversized {
        /// The configured limit.
        limit: usize,
        /// What could be read from the start of the message (its `id` and `method`).
        prefix: PrefixInfo,
    },
    /// The line is not valid UTF-8, so it cannot be JSON.
    #[error("message is not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// Offset of the first invalid byte within the line.
        offset: usize,
    },
}

/// Splits a byte stream into lines; `Ok(None)` means "need more bytes".
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    max: usize,
    /// Bytes already searched for a newline, so a long line is scanned once.
    scanned: usize,
    /// True while skipping the remainder of an oversized line.
    discarding: bool,
}

impl LineFramer {
    /// A framer refusing lines longer than `max_message_bytes` (newline excluded).
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            max: max_message_bytes,
            scanned: 0,
            discarding: false,
        }
    }

    /// The buffer to read into; reserve before reading so a read never reallocates mid-line.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < 8 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        &mut self.buf
    }

    /// Feeds bytes (for callers that do not read into [`Self::read_buf`]).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, `Ok(None)` when more bytes are needed, or an error for a bad line.
    ///
    /// Blank lines (only whitespace) are skipped: they carry no message.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            let found = memchr_newline(&self.buf[self.scanned..]).map(|i| self.scanned + i);
            let Some(end) = found else {
                if self.discarding {
                    self.buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                if self.buf.len() > self.max {
                    let prefix = scan_prefix(&self.buf[..self.max]);
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Err(FrameError::Oversized {
                        limit: self.max,
                        prefix,
                    });
                }
                self.scanned = self.buf.len();
                return Ok(None);
            };
            let line = self.buf.split_to(end + 1).freeze();
            self.scanned = 0;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let body_len = trim_line_end(&line).len();
            if body_len > self.max {
                let prefix = scan_prefix(&line[..self.max]);
                return Err(FrameError::Oversized {
                    limit: self.max,
                    prefix,
                });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            check_utf8(&line)?;
            return Ok(Some(line));
        }
    }

    /// At end of input: the unterminated last line, if any, as a final frame.
    pub fn finish(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.discarding || self.buf.iter().all(u8::is_ascii_whitespace) {
            self.buf.clear();
            self.discarding = false;
            return Ok(None);
        }
        let line = self.buf.split().freeze();
        self.scanned = 0;
        if line.len() > self.max {
            return Err(FrameError::Oversized {
                limit: self.max,
                prefix: scan_prefix(&line[..self.max]),
            });
        }
        check_utf8(&line)?;
        Ok(Some(line))
    }
}

fn check_utf8(line: &[u8]) -> Result<(), FrameError> {
    std::str::from_utf8(line)
        .map(|_| ())
        .map_err(|e| FrameError::InvalidUtf8 {
            offset: e.valid_up_to(),
        })
}

fn memchr_newline(haystack: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', haystack)
}

/// The line without its trailing `\n` or `\r\n`.
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refuses_an_oversized_line_once_and_resumes_after_it() {
        let mut f = LineFramer::new(16);
        f.extend(br#"{"id":7,"method":"tools/call","params":{"#);
        let got = frames(&mut f);
        assert_eq!(got.len(), 1);
        match &got[0] {
            Err(FrameError::Oversized { limit: 16, prefix }) => {
                assert_eq!(
                    prefix.id.as_ref().map(|id| id.to_string()),
                    Some("7".into())
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        f.extend(b"\"x\":\"yyyyyyyyyyyyyyyyyyyyyyyy\"}}\n{\"ok\":1}\n");
        assert_eq!(
            frames(&mut f),
            vec![Ok(Bytes::from_static(b"{\"ok\":1}\n"))]
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
        assert_eq!(got[0], Err(FrameError::InvalidUtf8 { offset: 6 }));
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
