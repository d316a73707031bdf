//! What the client reads an export through, besides bytes the page holds: for exports of
//! hundreds of megabytes, the page's `File`, a window at a time, so that the export is never
//! held whole in the tab. (The progress bar follows the import's own count of what it has read.)

use std::io::{Error, ErrorKind, Read, Result, Seek, SeekFrom};
use wasm_bindgen::JsValue;

/// Bytes fetched per call of the page's reader.
const WINDOW: usize = 4 << 20;

/// A file of `size` bytes read through `read_at(offset, length) -> Uint8Array` (in a Web
/// Worker: `FileReaderSync` over `File.slice`), one window of a few megabytes at a time.
pub struct JsFile {
    pub size: u64,
    pub read_at: js_sys::Function,
    pos: u64,
    window: Vec<u8>,
    window_start: u64,
}

impl JsFile {
    pub fn new(size: u64, read_at: js_sys::Function) -> JsFile {
        JsFile {
            size,
            read_at,
            pos: 0,
            window: Vec::new(),
            window_start: 0,
        }
    }

    fn fill(&mut self) -> Result<()> {
        let length = WINDOW.min((self.size - self.pos) as usize);
        let chunk = self
            .read_at
            .call2(&JsValue::NULL, &(self.pos as f64).into(), &(length as f64).into())
            .map_err(|e| Error::other(format!("the file cannot be read: {e:?}")))?;
        self.window = js_sys::Uint8Array::new(&chunk).to_vec();
        self.window_start = self.pos;
        if self.window.len() != length {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "the file changed while it was read",
            ));
        }
        Ok(())
    }
}

impl Read for JsFile {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = self.window_start + self.window.len() as u64;
        if self.pos < self.window_start || self.pos >= end {
            self.fill()?;
        }
        let offset = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window.len() - offset);
        buf[..n].copy_from_slice(&self.window[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for JsFile {
    fn seek(&mut self, pos: SeekFrom) -> Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(Error::new(ErrorKind::InvalidInput, "seek before the start of the file")),
        }
    }
}
