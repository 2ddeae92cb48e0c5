//! Streaming readers for CSV (with headers), JSON and NDJSON inputs.
//!
//! Every reader yields one `SourceRow` at a time so memory stays flat however
//! large the file is. A malformed row becomes a row-level error (reported as
//! `invalid`) rather than stopping the import; only I/O failures are fatal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::ImportError;

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON array of objects, or an object holding one (e.g. `{"users": [...]}`).
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// One record as read from the input, before mapping.
#[derive(Debug)]
pub struct SourceRow {
    /// 1-based line where the record starts (CSV header is line 1).
    pub line: u64,
    /// The fields, or why the row could not be parsed.
    pub data: Result<Map<String, Value>, String>,
}

/// Picks the format from the extension, falling back to sniffing the first byte.
pub fn detect_format(path: &Path) -> Result<Format, ImportError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" => return Ok(Format::Csv),
        "json" => return Ok(Format::Json),
        "ndjson" | "jsonl" => return Ok(Format::Ndjson),
        _ => {}
    }
    let mut f = File::open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
    let mut buf = [0u8; 512];
    let n = f.read(&mut buf).map_err(|e| ImportError::io("read input", e))?;
    Ok(match buf[..n].iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Ndjson,
        _ => Format::Csv,
    })
}

/// Where the records sit in an export whose layout a preset knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// The key of the records array in a JSON object (default: the first array).
    pub records_key: Option<&'static str>,
    /// Column names of a CSV file without a header line.
    pub csv_headers: Option<&'static [&'static str]>,
}

/// Opens `path` and returns a streaming iterator over its rows.
pub fn open(path: &Path, format: Format) -> Result<Box<dyn Iterator<Item = Result<SourceRow, ImportError>>>, ImportError> {
    open_with(path, format, Layout::default())
}

/// As [`open`], for an export with a known layout.
pub fn open_with(path: &Path, format: Format, layout: Layout) -> Result<Box<dyn Iterator<Item = Result<SourceRow, ImportError>>>, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
    let input = BufReader::with_capacity(256 * 1024, file);
    Ok(match format {
        Format::Csv => Box::new(CsvRows::with_headers(input, layout.csv_headers)?),
        Format::Ndjson => Box::new(NdjsonRows { inner: input, line: 0, text: String::new() }),
        Format::Json => Box::new(JsonArrayRows { key: layout.records_key, ..JsonArrayRows::new(input) }),
    })
}

/// The same rows as [`open`], read from any buffered source (the fuzz
/// targets feed bytes from memory).
pub fn rows_from<R: BufRead + 'static>(input: R, format: Format) -> Result<Box<dyn Iterator<Item = Result<SourceRow, ImportError>>>, ImportError> {
    Ok(match format {
        Format::Csv => Box::new(CsvRows::new(input)?),
        Format::Ndjson => Box::new(NdjsonRows { inner: input, line: 0, text: String::new() }),
        Format::Json => Box::new(JsonArrayRows::new(input)),
    })
}

/// Reads only the header line of a CSV file (used by `mapping`).
pub fn csv_headers(path: &Path) -> Result<Vec<String>, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::io(format!("open {}", path.display()), e))?;
    let rows = CsvRows::new(BufReader::new(file))?;
    Ok(rows.headers)
}

struct CsvRows<R> {
    reader: csv::Reader<R>,
    headers: Vec<String>,
    record: csv::StringRecord,
}

impl<R: Read> CsvRows<R> {
    fn new(buf: R) -> Result<Self, ImportError> {
        Self::with_headers(buf, None)
    }

    /// `given`: the names of a header-less file's columns (its first line is data).
    fn with_headers(buf: R, given: Option<&[&str]>) -> Result<Self, ImportError> {
        // Records end at `\n` only: with the default CRLF terminator the csv
        // crate counts a record's line before the `\n` of the previous `\r\n`,
        // one too few. The `\r` left at a row's end is trimmed with the value.
        let mut reader = csv::ReaderBuilder::new().has_headers(given.is_none()).flexible(true).terminator(csv::Terminator::Any(b'\n')).from_reader(buf);
        if let Some(names) = given {
            return Ok(CsvRows { reader, headers: names.iter().map(|n| n.to_string()).collect(), record: csv::StringRecord::new() });
        }
        let headers = reader
            .headers()
            .map_err(|e| ImportError::Input(format!("cannot read CSV header: {e}")))?
            .iter()
            // A UTF-8 byte order mark from spreadsheet exports must not become part of the first name.
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        Ok(CsvRows { reader, headers, record: csv::StringRecord::new() })
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<SourceRow, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                if self.record.len() != self.headers.len() {
                    let msg = format!("row has {} fields, header has {}", self.record.len(), self.headers.len());
                    return Some(Ok(SourceRow { line, data: Err(msg) }));
                }
                let mut map = Map::new();
                for (h, v) in self.headers.iter().zip(self.record.iter()) {
                    map.insert(h.clone(), Value::String(v.strip_suffix('\r').unwrap_or(v).to_string()));
                }
                Some(Ok(SourceRow { line, data: Ok(map) }))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                match e.kind() {
                    csv::ErrorKind::Io(_) => Some(Err(ImportError::Input(format!("CSV read failed: {e}")))),
                    // Bad UTF-8 or similar: one row is broken, the rest may be fine.
                    _ => Some(Ok(SourceRow { line, data: Err(format!("unreadable CSV row: {e}")) })),
                }
            }
        }
    }
}

struct NdjsonRows<R> {
    inner: R,
    line: u64,
    text: String,
}

impl<R: BufRead> Iterator for NdjsonRows<R> {
    type Item = Result<SourceRow, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.text.clear();
            self.line += 1;
            match self.inner.read_line(&mut self.text) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // Invalid UTF-8 on this line: skip the rest of it.
                    let mut sink = Vec::new();
                    if let Err(e) = self.inner.read_until(b'\n', &mut sink) {
                        return Some(Err(ImportError::io("read input", e)));
                    }
                    return Some(Ok(SourceRow { line: self.line, data: Err("line is not valid UTF-8".into()) }));
                }
                Err(e) => return Some(Err(ImportError::io("read input", e))),
            }
            let t = self.text.trim();
            if t.is_empty() {
                continue;
            }
            return Some(Ok(SourceRow { line: self.line, data: parse_object(t.as_bytes()) }));
        }
    }
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("record is not a JSON object".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Splits a JSON array into its elements without parsing the whole document:
/// a small scanner tracks strings and nesting, and each element's bytes are
/// parsed on their own. A top-level object is searched for its first array
/// value, which covers wrappers such as Firebase's `{"users": [...]}`.
struct JsonArrayRows<R> {
    inner: R,
    /// The key whose array holds the records (None: the first array found).
    key: Option<&'static str>,
    line: u64,
    started: bool,
    done: bool,
    element: Vec<u8>,
}

impl<R: BufRead> JsonArrayRows<R> {
    fn new(inner: R) -> Self {
        JsonArrayRows { inner, key: None, line: 1, started: false, done: false, element: Vec::new() }
    }

    fn byte(&mut self) -> Result<Option<u8>, ImportError> {
        let buf = self.inner.fill_buf().map_err(|e| ImportError::io("read input", e))?;
        let Some(&b) = buf.first() else { return Ok(None) };
        self.inner.consume(1);
        if b == b'\n' {
            self.line += 1;
        }
        Ok(Some(b))
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ImportError> {
        loop {
            match self.byte()? {
                Some(b) if b.is_ascii_whitespace() => continue,
                other => return Ok(other),
            }
        }
    }

    /// Consumes one JSON value whose first byte is `first`, storing it if `keep`.
    /// A scalar ends at the byte after it; that byte is returned when it is a
    /// delimiter (`,`, `]`, `}`) so the caller does not lose it.
    fn scan_value(&mut self, first: u8, keep: bool) -> Result<Option<u8>, ImportError> {
        self.element.clear();
        if keep {
            self.element.push(first);
        }
        match first {
            b'{' | b'[' | b'"' => {
                let mut depth: i64 = if first == b'"' { 0 } else { 1 };
                let mut in_str = first == b'"';
                let mut escape = false;
                loop {
                    let Some(b) = self.byte()? else {
                        return Err(ImportError::Input("JSON input ends in the middle of a record".into()));
                    };
                    if keep {
                        self.element.push(b);
                    }
                    if in_str {
                        if escape {
                            escape = false;
                        } else if b == b'\\' {
                            escape = true;
                        } else if b == b'"' {
                            in_str = false;
                        }
                    } else {
                        match b {
                            b'"' => in_str = true,
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' => depth -= 1,
                            _ => {}
                        }
                    }
                    if depth == 0 && !in_str {
                        return Ok(None);
                    }
                }
            }
            _ => loop {
                match self.byte()? {
                    None => return Ok(None),
                    Some(b) if b.is_ascii_whitespace() => return Ok(None),
                    Some(b @ (b',' | b']' | b'}')) => return Ok(Some(b)),
                    Some(b) => {
                        if keep {
                            self.element.push(b);
                        }
                    }
                }
            },
        }
    }

    /// Positions the reader just inside the records array.
    fn start(&mut self) -> Result<(), ImportError> {
        match self.skip_ws()? {
            Some(b'[') => Ok(()),
            Some(b'{') => loop {
                // Expect "key": value pairs until an array value turns up.
                match self.skip_ws()? {
                    Some(b'"') => {}
                    Some(b',') => continue,
                    _ => return Err(ImportError::Input("JSON object holds no array of records".into())),
                }
                self.scan_value(b'"', true)?;
                let wanted = match self.key {
                    None => true,
                    Some(k) => serde_json::from_slice::<String>(&self.element).is_ok_and(|name| name == k),
                };
                if self.skip_ws()? != Some(b':') {
                    return Err(ImportError::Input("malformed JSON object".into()));
                }
                match self.skip_ws()? {
                    Some(b'[') if wanted => return Ok(()),
                    Some(b'[') => {
                        if let Some(b'}') = self.scan_value(b'[', false)? {
                            return Err(ImportError::Input("JSON object holds no array of records".into()));
                        }
                    }
                    Some(b) => {
                        if let Some(b'}') = self.scan_value(b, false)? {
                            return Err(ImportError::Input("JSON object holds no array of records".into()));
                        }
                    }
                    None => return Err(ImportError::Input("JSON input ends early".into())),
                }
            },
            _ => Err(ImportError::Input("JSON input must be an array of records".into())),
        }
    }
}

impl<R: BufRead> Iterator for JsonArrayRows<R> {
    type Item = Result<SourceRow, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            if let Err(e) = self.start() {
                self.done = true;
                return Some(Err(e));
            }
        }
        let first = loop {
            match self.skip_ws() {
                Ok(Some(b',')) => continue,
                Ok(Some(b']')) | Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(b)) => break b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        };
        let line = self.line;
        match self.scan_value(first, true) {
            Ok(end) => {
                if end == Some(b']') {
                    self.done = true;
                }
                Some(Ok(SourceRow { line, data: parse_object(&self.element) }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = Vec<(u64, Result<Map<String, Value>, String>)>;

    fn rows_of(text: &str, format: Format) -> Rows {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("agi-reader-{}-{n}", std::process::id()));
        std::fs::write(&path, text).expect("write temp");
        let rows: Vec<_> = open(&path, format).expect("open").map(|r| r.expect("row")).map(|r| (r.line, r.data)).collect();
        let _ = std::fs::remove_file(&path);
        rows
    }

    #[test]
    fn json_scanner_handles_strings_with_brackets_and_escapes() {
        let text = "[\n{\"name\": \"a ] } [ {\", \"q\": \"x\\\"y\"},\n {\"n\": [1, {\"m\": 2}]} , 42,\n{\"last\": true}\n]";
        let rows = rows_of(text, Format::Json);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.as_ref().map(|m| m["q"].clone()).ok(), Some(Value::String("x\"y".into())));
        assert_eq!(rows[1].1.as_ref().map(|m| m["n"][1]["m"].clone()).ok(), Some(Value::from(2)));
        assert!(rows[2].1.is_err(), "a bare number is not a record");
        assert_eq!(rows[3].0, 4);
    }

    #[test]
    fn json_object_wrapper_and_csv_field_count() {
        let rows = rows_of("{\"kind\": \"x\", \"meta\": {\"a\": [1]}, \"users\": [{\"email\": \"a@b.co\"}]}", Format::Json);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].1.is_ok());
        let rows = rows_of("\u{feff}Email,Name\na@b.co,A\nb@b.co\n", Format::Csv);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].1.as_ref().is_ok_and(|m| m.contains_key("Email")));
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].1.is_err());
    }
}
