//! Splits a JSON document into its top-level elements without parsing the whole document:
//! the elements of a top-level array, the lines of a JSON Lines file, or a run of concatenated
//! values. Memory holds one element at a time, so a multi-hundred-megabyte export streams.

use std::io::{self, BufRead};

/// A conversation larger than this is skipped rather than buffered (a browser tab has limits).
pub const MAX_ELEMENT_BYTES: usize = 128 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `[ value, value, ... ]`
    Array,
    /// One value per line.
    Lines,
    /// Values one after the other, separated by whitespace (e.g. one pretty-printed object).
    Values,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The bytes of one complete top-level element.
    Element(Vec<u8>),
    /// The input ended inside an element: the file was cut short.
    Truncated,
    /// An element that cannot be framed (too large, or stray bytes between elements).
    Unframed,
}

pub struct Elements<R> {
    reader: R,
    framing: Framing,
    started: bool,
    finished: bool,
}

impl<R: BufRead> Elements<R> {
    pub fn new(reader: R, framing: Framing) -> Self {
        Elements {
            reader,
            framing,
            started: false,
            finished: false,
        }
    }

    /// The next piece, or `None` at the end of the input.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        if self.finished {
            return Ok(None);
        }
        if self.framing == Framing::Lines {
            return self.next_line();
        }
        if !self.started {
            self.started = true;
            if self.framing == Framing::Array {
                match self.skip_separators()? {
                    Some(b'[') => self.reader.consume(1),
                    Some(_) => {
                        self.finished = true;
                        return Ok(Some(Piece::Unframed));
                    }
                    None => {
                        self.finished = true;
                        return Ok(Some(Piece::Truncated));
                    }
                }
            }
        }
        match self.skip_separators()? {
            None => {
                self.finished = true;
                // An array that never closed was cut short; a run of values may just end.
                Ok((self.framing == Framing::Array).then_some(Piece::Truncated))
            }
            Some(b']') if self.framing == Framing::Array => {
                self.finished = true;
                Ok(None)
            }
            Some(_) => self.scan_value(),
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Piece>> {
        loop {
            let mut line = Vec::new();
            let n = <&mut R as io::Read>::take(&mut self.reader, MAX_ELEMENT_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                self.finished = true;
                return Ok(None);
            }
            if line.len() > MAX_ELEMENT_BYTES {
                // Drop the rest of this overlong line.
                let mut sink = Vec::new();
                self.reader.read_until(b'\n', &mut sink)?;
                return Ok(Some(Piece::Unframed));
            }
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Ok(Some(Piece::Element(line)));
        }
    }

    /// Skips whitespace (and, between array elements, commas); returns the next byte unread.
    fn skip_separators(&mut self) -> io::Result<Option<u8>> {
        let commas = self.framing == Framing::Array;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let skip = buf
                .iter()
                .take_while(|&&b| {
                    b.is_ascii_whitespace() || (commas && b == b',') || b == 0xEF || b == 0xBB || b == 0xBF
                })
                .count();
            if skip < buf.len() {
                let next = buf[skip];
                self.reader.consume(skip);
                return Ok(Some(next));
            }
            let len = buf.len();
            self.reader.consume(len);
        }
    }

    /// Reads one value starting at the current byte: an object or array up to its matching
    /// bracket, or a scalar up to the next separator.
    fn scan_value(&mut self) -> io::Result<Option<Piece>> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut scalar: Option<bool> = None;
        let mut oversized = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                self.finished = true;
                return Ok(Some(
                    if scalar == Some(true) && !in_string && !oversized && !out.is_empty() {
                        Piece::Element(out)
                    } else {
                        Piece::Truncated
                    },
                ));
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                let is_scalar = *scalar.get_or_insert(b != b'{' && b != b'[');
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        if depth == 0 && !is_scalar {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' | b']' | b'}' if is_scalar && depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    _ if is_scalar && depth == 0 && b.is_ascii_whitespace() => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let take = end.unwrap_or(buf.len());
            if oversized || out.len() + take > MAX_ELEMENT_BYTES {
                // Keep scanning to the end of an oversized element, discarding it.
                oversized = true;
                out = Vec::new();
            } else {
                out.extend_from_slice(&buf[..take]);
            }
            self.reader.consume(take);
            if end.is_some() {
                return Ok(Some(if oversized {
                    Piece::Unframed
                } else {
                    Piece::Element(out)
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &str, framing: Framing) -> Vec<Piece> {
        let mut e = Elements::new(std::io::BufReader::with_capacity(7, input.as_bytes()), framing);
        let mut out = Vec::new();
        while let Some(p) = e.next_piece().unwrap() {
            out.push(p);
        }
        out
    }

    fn el(s: &str) -> Piece {
        Piece::Element(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_array_elements_with_brackets_inside_strings() {
        let got = pieces(r#" [ {"a":"x]}\"{"}, {"b":[1,2]} ,3 ]"#, Framing::Array);
        assert_eq!(got, vec![el(r#"{"a":"x]}\"{"}"#), el(r#"{"b":[1,2]}"#), el("3")]);
    }

    #[test]
    fn reports_a_cut_short_array() {
        let got = pieces(r#"[{"a":1},{"b":"unfinish"#, Framing::Array);
        assert_eq!(got, vec![el(r#"{"a":1}"#), Piece::Truncated]);
        assert_eq!(
            pieces("[{\"a\":1},", Framing::Array),
            vec![el(r#"{"a":1}"#), Piece::Truncated]
        );
    }

    #[test]
    fn empty_array_has_no_elements() {
        assert!(pieces("  [ ]  ", Framing::Array).is_empty());
    }

    #[test]
    fn splits_lines_and_values() {
        assert_eq!(
            pieces("{\"a\":1}\n\n{\"b\":2}\n", Framing::Lines),
            vec![el("{\"a\":1}\n"), el("{\"b\":2}\n")]
        );
        assert_eq!(
            pieces("{\"a\":\n 1}\n {\"b\":2}", Framing::Values),
            vec![el("{\"a\":\n 1}"), el("{\"b\":2}")]
        );
    }
}
