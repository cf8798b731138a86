//! Incremental Server-Sent-Events parser.
//!
//! Upstream bodies arrive in arbitrary chunks, so a frame (or even a CRLF pair)
//! may be cut anywhere. The parser keeps one `BytesMut` buffer, scans each byte
//! once, and hands out the `data` of single-line events as a zero-copy slice of
//! that buffer (only multi-line `data` needs a join).

use bytes::{Buf, Bytes, BytesMut};

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// All `data:` lines of the event, joined with `\n`.
    pub data: Bytes,
}

/// Incremental SSE parser; see the module docs.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    /// Start of the first line not yet consumed (relative to `buf`).
    line_start: usize,
    /// Where the search for the next line terminator resumes, so a long partial
    /// line is not rescanned on every `push`.
    scan_from: usize,
    /// The previous line ended in a bare `\r`; a `\n` right after it belongs to
    /// that terminator (it may arrive in the next chunk).
    skip_lf: bool,
    /// Whether the (optional) UTF-8 BOM at stream start has been dealt with.
    bom_checked: bool,
    /// Byte ranges (relative to `buf`) of the current event's `data` values.
    data: Vec<(usize, usize)>,
    event: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw bytes from the wire.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet returned as part of an event.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete event, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if !self.bom_checked {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return None;
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.advance(3);
            }
            self.bom_checked = true;
        }
        loop {
            if self.skip_lf {
                match self.buf.get(self.line_start) {
                    None => return None,
                    Some(b'\n') => {
                        self.line_start += 1;
                        self.scan_from = self.scan_from.max(self.line_start);
                    }
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            if self.data.is_empty() && self.line_start > 0 {
                // No data range points into the consumed lines: release them.
                let n = self.line_start;
                self.buf.advance(n);
                self.line_start = 0;
                self.scan_from -= n;
            }
            let from = self.scan_from.max(self.line_start);
            let rel = self.buf[from..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            let Some(rel) = rel else {
                self.scan_from = self.buf.len();
                return None;
            };
            let end = from + rel;
            let start = self.line_start;
            self.skip_lf = self.buf[end] == b'\r';
            self.line_start = end + 1;
            self.scan_from = self.line_start;
            if let Some(ev) = self.line(start, end) {
                return Some(ev);
            }
        }
    }

    /// Upstream ended: treats a trailing unterminated line and event as
    /// complete. Strict SSE would drop them, but a proxy loses less by not.
    pub fn flush(&mut self) -> Option<SseEvent> {
        if let Some(ev) = self.next_event() {
            return Some(ev);
        }
        let len = self.buf.len();
        if self.line_start < len {
            let start = self.line_start;
            self.line_start = len;
            self.scan_from = len;
            if let Some(ev) = self.line(start, len) {
                return Some(ev);
            }
        }
        self.line(len, len)
    }

    /// Handles one line `buf[start..end]`; a blank line dispatches.
    fn line(&mut self, start: usize, end: usize) -> Option<SseEvent> {
        if start == end {
            return self.dispatch();
        }
        let line = &self.buf[start..end];
        if line[0] == b':' {
            return None;
        }
        let (name_end, mut value_start) = match line.iter().position(|&b| b == b':') {
            Some(c) => (c, c + 1),
            None => (line.len(), line.len()),
        };
        if line.get(value_start) == Some(&b' ') {
            value_start += 1;
        }
        match &line[..name_end] {
            b"data" => self.data.push((start + value_start, end)),
            b"event" => {
                self.event = Some(String::from_utf8_lossy(&line[value_start..]).into_owned())
            }
            _ => {} // id, retry and unknown fields do not matter to a proxy.
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let consumed = self.line_start.min(self.buf.len());
        if self.data.is_empty() {
            // Nothing to hand out: drop the consumed lines now.
            self.buf.advance(consumed);
            self.line_start -= consumed;
            self.scan_from -= consumed;
            self.event = None;
            return None;
        }
        let block = self.buf.split_to(consumed).freeze();
        self.line_start -= consumed;
        self.scan_from -= consumed;
        let data = if let [(s, e)] = self.data[..] {
            block.slice(s..e)
        } else {
            let len = self.data.iter().map(|(s, e)| e - s + 1).sum::<usize>() - 1;
            let mut joined = BytesMut::with_capacity(len);
            for (i, &(s, e)) in self.data.iter().enumerate() {
                if i > 0 {
                    joined.extend_from_slice(b"\n");
                }
                joined.extend_from_slice(&block[s..e]);
            }
            joined.freeze()
        };
        self.data.clear();
        Some(SseEvent {
            event: self.event.take(),
            data,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn all(p: &mut SseParser) -> Vec<SseEvent> {
        std::iter::from_fn(|| p.next_event()).collect()
    }

    fn parse_whole(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        p.push(input);
        let mut v = all(&mut p);
        v.extend(std::iter::from_fn(|| p.flush()));
        v
    }

    fn parse_split(input: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut v = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            p.push(&input[prev..c]);
            v.extend(all(&mut p));
            prev = c;
        }
        v.extend(std::iter::from_fn(|| p.flush()));
        v
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    const MIXED: &[u8] = b"\xEF\xBB\xBF: comment\r\ndata: {\"a\":1}\r\n\r\nevent: ping\nid: 7\nretry: 10\ndata:x\ndata:  y\n\ndata\r\rdata: cr\r\r: only a comment\n\ndata: last\n\n";

    fn mixed_expected() -> Vec<SseEvent> {
        vec![
            ev(None, "{\"a\":1}"),
            ev(Some("ping"), "x\n y"),
            ev(None, ""),
            ev(None, "cr"),
            ev(None, "last"),
        ]
    }

    #[test]
    fn parses_mixed_line_endings_and_fields() {
        assert_eq!(parse_whole(MIXED), mixed_expected());
    }

    #[test]
    fn every_single_split_position_gives_same_events() {
        let whole = parse_whole(MIXED);
        for cut in 0..=MIXED.len() {
            assert_eq!(parse_split(MIXED, &[cut]), whole, "cut at {cut}");
        }
        // Byte-at-a-time.
        let cuts: Vec<usize> = (1..MIXED.len()).collect();
        assert_eq!(parse_split(MIXED, &cuts), whole);
    }

    #[test]
    fn random_splits_give_same_events() {
        let mut rng = fastrand::Rng::with_seed(0x5EE);
        let whole = parse_whole(MIXED);
        for _ in 0..2000 {
            let n = rng.usize(0..12);
            let mut cuts: Vec<usize> = (0..n).map(|_| rng.usize(0..=MIXED.len())).collect();
            cuts.sort_unstable();
            assert_eq!(parse_split(MIXED, &cuts), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn incomplete_event_waits_and_pending_counts() {
        let mut p = SseParser::new();
        p.push(b"data: abc\r\n");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.pending_bytes(), 11);
        p.push(b"\r");
        assert_eq!(p.next_event(), Some(ev(None, "abc")));
        // The trailing LF of the CRLF is not yet known; it must not dispatch.
        p.push(b"\n");
        assert_eq!(p.next_event(), None);
        assert_eq!(p.pending_bytes(), 0);
    }

    #[test]
    fn single_line_data_is_not_copied() {
        let mut p = SseParser::new();
        p.push(b"data: hello\n\n");
        let e = p.next_event().unwrap();
        assert_eq!(&e.data[..], b"hello");
    }

    #[test]
    fn flush_completes_unterminated_event() {
        let mut p = SseParser::new();
        p.push(b"data: a\n\ndata: tail");
        assert_eq!(p.next_event(), Some(ev(None, "a")));
        assert_eq!(p.next_event(), None);
        assert_eq!(p.flush(), Some(ev(None, "tail")));
        assert_eq!(p.flush(), None);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert_eq!(parse_whole(b"event: x\n\n:c\n\n"), vec![]);
    }
}
