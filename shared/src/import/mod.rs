//! Import: reads a chat export into [`Conversation`]s, one at a time, without holding the
//! export in memory. The format is recognised from the content, never from the file name:
//!
//! - ChatGPT: the export `.zip`, or `conversations.json` / `conversations-NNN.json`;
//! - Claude: `conversations.json` (or the export `.zip`);
//! - ShareGPT-style JSON (`conversations: [{from, value}]`);
//! - OpenAI-style JSON Lines (`{"messages": [{role, content}]}`).
//!
//! A conversation that cannot be read is skipped and counted; it never stops the rest.

mod chatgpt;
mod claude;
mod elements;
mod openai;
mod sharegpt;

use crate::conversation::Conversation;
use elements::{Elements, Framing, Piece};
use serde_json::Value;
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

/// How far an import has read, in bytes of the conversations' text: a plain file's bytes, or
/// the uncompressed bytes of a zip's entries (their sizes are in the archive's directory, read
/// first). Unlike a position in the file, it moves with the conversations as they come out, so
/// a progress bar and a time estimate built on it are honest.
#[derive(Debug, Default)]
pub struct ImportProgress {
    done: Cell<u64>,
    total: Cell<u64>,
}

impl ImportProgress {
    /// Bytes read so far and bytes to read in all.
    pub fn bytes(&self) -> (u64, u64) {
        (self.done.get(), self.total.get())
    }
}

/// A reader that adds what it reads to an import's progress.
struct Counted<'a, R> {
    inner: R,
    progress: &'a ImportProgress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.done.set(self.progress.done.get() + n as u64);
        Ok(n)
    }
}

/// What the import saw, for the summary line and for the contributor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Conversations handed to the caller.
    pub conversations: u64,
    /// Records that looked like conversations but could not be read, or had no user message.
    pub skipped: u64,
    /// The input ended in the middle of a record (a cut-short download, say).
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{name} is empty. {EXPECTED}")]
    Empty { name: String },
    #[error("{name} is not a supported export: it looks like {found}. {EXPECTED}")]
    Unsupported { name: String, found: String },
    #[error("{name} holds no conversations ({skipped} unreadable records skipped). {EXPECTED}")]
    NoConversations { name: String, skipped: u64 },
    #[error("{name} is a damaged zip archive ({detail}). Download the export again.")]
    CorruptZip { name: String, detail: String },
    #[error("could not read {name}: {source}")]
    Io { name: String, source: io::Error },
}

const EXPECTED: &str = "Expected a ChatGPT export (the .zip, or conversations.json), a Claude export \
(conversations.json), ShareGPT-style JSON, or OpenAI-style JSON Lines.";

/// Reads every conversation of the export `input` and hands each to `emit`.
/// `name` is used only in error messages.
pub fn read_export<R: Read + Seek>(
    input: R,
    name: &str,
    emit: &mut dyn FnMut(Conversation),
) -> Result<ImportSummary, ImportError> {
    read_export_with_progress(input, name, &ImportProgress::default(), emit)
}

/// [`read_export`], keeping `progress` up to date as it reads.
pub fn read_export_with_progress<R: Read + Seek>(
    mut input: R,
    name: &str,
    progress: &ImportProgress,
    emit: &mut dyn FnMut(Conversation),
) -> Result<ImportSummary, ImportError> {
    let io_err = |source| ImportError::Io {
        name: name.to_owned(),
        source,
    };
    let mut head = [0u8; 4];
    let n = read_up_to(&mut input, &mut head).map_err(io_err)?;
    input.seek(SeekFrom::Start(0)).map_err(io_err)?;
    if n == 0 {
        return Err(ImportError::Empty { name: name.to_owned() });
    }
    let mut tally = Tally::default();
    if head.starts_with(b"PK") {
        read_zip(input, name, progress, &mut tally, emit)?;
    } else {
        progress.total.set(input.seek(SeekFrom::End(0)).map_err(io_err)?);
        input.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let counted = Counted { inner: input, progress };
        let mut reader = BufReader::with_capacity(1 << 16, counted);
        match read_json(&mut reader, "", &mut tally, emit).map_err(io_err)? {
            JsonOutcome::Read => {}
            JsonOutcome::NotJson(found) | JsonOutcome::NotConversations(found) => {
                return Err(ImportError::Unsupported {
                    name: name.to_owned(),
                    found,
                });
            }
        }
    }
    tally.finish(name)
}

#[derive(Default)]
struct Tally {
    summary: ImportSummary,
    /// Some record anywhere was recognised as a conversation format.
    recognised: bool,
    /// The first thing that was not an export, for the error message.
    first_unrecognised: Option<String>,
}

impl Tally {
    fn finish(self, name: &str) -> Result<ImportSummary, ImportError> {
        if self.summary.conversations > 0 {
            return Ok(self.summary);
        }
        if self.recognised || self.summary.truncated {
            return Err(ImportError::NoConversations {
                name: name.to_owned(),
                skipped: self.summary.skipped,
            });
        }
        match self.first_unrecognised {
            Some(found) => Err(ImportError::Unsupported {
                name: name.to_owned(),
                found,
            }),
            None => Err(ImportError::NoConversations {
                name: name.to_owned(),
                skipped: 0,
            }),
        }
    }
}

enum JsonOutcome {
    Read,
    NotJson(String),
    NotConversations(String),
}

fn read_zip<R: Read + Seek>(
    input: R,
    name: &str,
    progress: &ImportProgress,
    tally: &mut Tally,
    emit: &mut dyn FnMut(Conversation),
) -> Result<(), ImportError> {
    let corrupt = |e: zip::result::ZipError| ImportError::CorruptZip {
        name: name.to_owned(),
        detail: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(input).map_err(corrupt)?;
    // Name order makes split exports (conversations-000.json, -001, …) come out in order.
    let mut entries: Vec<(String, usize, u64)> = (0..archive.len())
        .filter_map(|i| {
            let entry = archive.by_index_raw(i).ok()?;
            entry.is_file().then(|| (entry.name().to_owned(), i, entry.size()))
        })
        .collect();
    entries.sort();
    progress.total.set(entries.iter().map(|e| e.2).sum());
    let mut finished = 0;
    for (entry_name, index, size) in entries {
        let entry = archive.by_index(index).map_err(corrupt)?;
        let mut reader = BufReader::with_capacity(1 << 16, Counted { inner: entry, progress });
        let id_prefix = format!("{entry_name}:");
        let outcome = read_json(&mut reader, &id_prefix, tally, emit).map_err(|e| ImportError::CorruptZip {
            name: name.to_owned(),
            detail: format!("{entry_name}: {e}"),
        })?;
        // Other files of an export (chat.html, user.json, images, …) are not conversations.
        if let JsonOutcome::NotConversations(found) = outcome {
            tally
                .first_unrecognised
                .get_or_insert(format!("a zip archive whose {entry_name} is {found}"));
        }
        // An entry that is not conversations (chat.html, images) is left after its first bytes:
        // it counts as read all the same.
        finished += size;
        progress.done.set(finished);
    }
    if !tally.recognised && tally.first_unrecognised.is_none() {
        tally.first_unrecognised = Some("a zip archive with no conversation file in it".into());
    }
    Ok(())
}

/// Reads one JSON (or JSON Lines) document. Records of a document in which no record is a
/// conversation are not counted as skipped: the document is simply not an export.
fn read_json<R: BufRead>(
    reader: &mut R,
    id_prefix: &str,
    tally: &mut Tally,
    emit: &mut dyn FnMut(Conversation),
) -> io::Result<JsonOutcome> {
    let framing = match sniff_framing(reader)? {
        Ok(framing) => framing,
        Err(found) => return Ok(JsonOutcome::NotJson(found)),
    };
    let mut elements = Elements::new(reader, framing);
    let mut recognised = false;
    let mut unreadable = 0u64;
    let mut first_keys: Option<String> = None;
    let mut index = 0u64;
    while let Some(piece) = elements.next_piece()? {
        index += 1;
        let bytes = match piece {
            Piece::Element(bytes) => bytes,
            Piece::Truncated => {
                tally.summary.truncated = true;
                unreadable += 1;
                continue;
            }
            Piece::Unframed => {
                unreadable += 1;
                continue;
            }
        };
        // For records without an id of their own; never derived from the local file name.
        let fallback_id = format!("{id_prefix}record-{index}");
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => match parse_conversation(&value, &fallback_id) {
                Record::Conversation(conversation) => {
                    recognised = true;
                    tally.summary.conversations += 1;
                    emit(conversation);
                }
                Record::Broken => {
                    recognised = true;
                    unreadable += 1;
                }
                Record::Unrecognised => {
                    unreadable += 1;
                    first_keys.get_or_insert_with(|| describe(&value, framing));
                }
            },
            Err(_) => unreadable += 1,
        }
    }
    if recognised {
        tally.recognised = true;
        tally.summary.skipped += unreadable;
        Ok(JsonOutcome::Read)
    } else if index == 0 {
        Ok(JsonOutcome::Read)
    } else if tally.summary.truncated && first_keys.is_none() {
        tally.summary.skipped += unreadable;
        Ok(JsonOutcome::Read)
    } else {
        Ok(JsonOutcome::NotConversations(
            first_keys.unwrap_or_else(|| "JSON that cannot be parsed".into()),
        ))
    }
}

enum Record {
    Conversation(Conversation),
    /// In a conversation format, but damaged, or with nothing the user wrote.
    Broken,
    Unrecognised,
}

fn parse_conversation(value: &Value, fallback_id: &str) -> Record {
    let parsed = if chatgpt::matches(value) {
        chatgpt::parse(value)
    } else if claude::matches(value) {
        claude::parse(value)
    } else if sharegpt::matches(value) {
        sharegpt::parse(value, fallback_id)
    } else if openai::matches(value) {
        openai::parse(value, fallback_id)
    } else {
        return Record::Unrecognised;
    };
    match parsed {
        Ok(c) if c.first_user_text().is_some() => Record::Conversation(c),
        _ => Record::Broken,
    }
}

/// Decides how the document is framed from its first bytes, or says what it is instead.
fn sniff_framing<R: BufRead>(reader: &mut R) -> io::Result<Result<Framing, String>> {
    let head = reader.fill_buf()?;
    if head.is_empty() {
        return Ok(Err("an empty file".into()));
    }
    if head.iter().take(4096).any(|&b| b == 0) || std::str::from_utf8(utf8_prefix(head)).is_err() {
        return Ok(Err("a binary file".into()));
    }
    let first = head
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
    Ok(match first {
        Some(b'[') => Ok(Framing::Array),
        Some(b'{') => Ok(if first_line_is_a_value(head) {
            Framing::Lines
        } else {
            Framing::Values
        }),
        Some(b'<') => Err("an HTML or XML document".into()),
        Some(_) => Err("a text file that is not JSON".into()),
        None => Err("a file of only whitespace".into()),
    })
}

/// A JSON Lines file has a complete value on its first line; a pretty-printed object does not.
fn first_line_is_a_value(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    head.contains(&b'\n') && serde_json::from_slice::<Value>(line).is_ok()
}

/// The longest prefix of `bytes` that does not cut a UTF-8 character in half.
fn utf8_prefix(bytes: &[u8]) -> &[u8] {
    let bytes = &bytes[..bytes.len().min(4096)];
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        Err(_) => bytes,
    }
}

fn describe(value: &Value, framing: Framing) -> String {
    match value {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().take(6).map(String::as_str).collect();
            let what = if framing == Framing::Values {
                "a JSON object"
            } else {
                "JSON records"
            };
            format!("{what} with the fields {}", keys.join(", "))
        }
        Value::Array(_) => "JSON arrays of arrays".into(),
        _ => "JSON values that are not objects".into(),
    }
}

fn read_up_to<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The text of a list of content parts: plain strings, and `{"type": "text", "text": ...}`
/// objects. Images, audio and other non-text parts are left out.
/// The UTC day of a Unix time in seconds, `YYYY-MM-DD` (days to civil date: H. Hinnant's
/// algorithm); `None` outside the years 1970–9999.
fn day_of_unix(seconds: f64) -> Option<String> {
    if !(0.0..253_402_300_800.0).contains(&seconds) {
        return None;
    }
    let days = (seconds / 86_400.0).floor() as i64 + 719_468;
    let era = days / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

/// The day of an ISO 8601 timestamp (`2024-05-01T12:00:00Z` → `2024-05-01`), if it starts with one.
fn iso_day(text: &str) -> Option<String> {
    let day = text.get(..10)?;
    let digits = |range: std::ops::Range<usize>| day[range].bytes().all(|b| b.is_ascii_digit());
    let shaped = digits(0..4) && digits(5..7) && digits(8..10) && &day[4..5] == "-" && &day[7..8] == "-";
    shaped.then(|| day.to_owned())
}

fn text_of_parts(parts: &Value) -> String {
    let Some(parts) = parts.as_array() else {
        return parts.as_str().unwrap_or_default().to_owned();
    };
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => {
                let kind = o.get("type").or_else(|| o.get("content_type")).and_then(Value::as_str);
                if kind == Some("text") {
                    o.get("text").and_then(Value::as_str)
                } else {
                    None
                }
            }
            _ => None,
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    texts.join("\n")
}

#[cfg(test)]
mod day_tests {
    use super::{day_of_unix, iso_day};

    #[test]
    fn days_are_read_from_unix_times_and_iso_timestamps() {
        assert_eq!(day_of_unix(0.0).as_deref(), Some("1970-01-01"));
        assert_eq!(day_of_unix(1_700_000_000.5).as_deref(), Some("2023-11-14"));
        assert_eq!(day_of_unix(951_782_400.0).as_deref(), Some("2000-02-29"));
        assert_eq!(day_of_unix(1_709_251_199.0).as_deref(), Some("2024-02-29"));
        assert_eq!(day_of_unix(-1.0), None);
        assert_eq!(day_of_unix(f64::NAN), None);
        assert_eq!(iso_day("2024-05-01T12:00:00.123456Z").as_deref(), Some("2024-05-01"));
        assert_eq!(iso_day("yesterday at noon"), None);
        assert_eq!(iso_day("2024"), None);
    }
}
