//! Files, on the local disk or S3, resolved against the lake root: the files at a source's path
//! (one file or a folder), and files of lines — read whole, their line ends found once with
//! memchr — for both modes: the JSON-lines and Extended JSON sources of batch jobs, and
//! `--from-files DIR`, where the file `DIR/<topic>.jsonl` stands for a topic (one partition,
//! the line index as offset).

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use super::positions::{InputBatch, Positions, RawRecords};
use crate::catalog::Lake;
use crate::config::stream::BatchLimit;
use crate::config::stream_pipeline::StreamPipeline;
use crate::error::{Error, Result};

/// A file to read: its store, its path in the store and how to show it.
#[derive(Debug, Clone)]
pub struct FileRef {
    /// The store holding it.
    pub store: std::sync::Arc<dyn ObjectStore>,
    /// Its path in the store.
    pub path: ObjectPath,
    /// Its name in messages: a local path, or the URL for remote stores.
    pub shown: String,
}

/// The files at a path: the file itself, or every file in the folder (sorted; names starting
/// with `.` or `_` are skipped). A missing path is an error naming it.
pub async fn list_files(source_name: &str, path: &str, lake: &Lake) -> Result<Vec<FileRef>> {
    let url = lake.location().resolve(path)?;
    let (store, object_path) = lake.object_store(&url)?;
    let source_error = |message: String| Error::Source {
        source_name: source_name.to_string(),
        location: shown(&url, &object_path),
        message,
        retryable: false,
        cause: None,
    };
    match store.head(&object_path).await {
        Ok(_) => {
            let shown = shown(&url, &object_path);
            return Ok(vec![FileRef {
                store,
                path: object_path,
                shown,
            }]);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(source_error(e.to_string())),
    }
    let mut files = Vec::new();
    let mut listing = store.list(Some(&object_path));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| source_error(e.to_string()))?;
        let hidden = meta
            .location
            .filename()
            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
        if !hidden {
            files.push(meta.location);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(source_error(
            "no such file or folder (generate sample data with `quickchat-etl generate --out <lake>/landing`, \
             or set LANDING_PATH)"
                .into(),
        ));
    }
    Ok(files
        .into_iter()
        .map(|path| FileRef {
            store: store.clone(),
            shown: shown(&url, &path),
            path,
        })
        .collect())
}

fn shown(url: &Url, path: &ObjectPath) -> String {
    match url.scheme() {
        "file" => format!("/{path}"),
        scheme => format!("{scheme}://{}/{path}", url.host_str().unwrap_or_default()),
    }
}

/// A file of lines (or a chunk of whole lines of one), with the byte range of each line
/// (without its newline).
pub struct LinesFile {
    /// Where it was read from, for messages.
    pub shown: String,
    bytes: Bytes,
    lines: Vec<(usize, usize)>,
    /// Lines of the file before these (a chunk's place in its file).
    lines_before: u64,
}

impl LinesFile {
    /// Indexes the lines of `bytes` (a last line without a newline counts).
    pub fn new(shown: String, bytes: Bytes) -> Self {
        let mut lines = Vec::with_capacity(bytes.len() / 128);
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &bytes) {
            lines.push((start, end));
            start = end + 1;
        }
        if start < bytes.len() {
            lines.push((start, bytes.len()));
        }
        Self {
            shown,
            bytes,
            lines,
            lines_before: 0,
        }
    }

    /// The line number (from 1) in its file of line `i` (from 0) of these.
    pub fn line_number(&self, i: usize) -> u64 {
        self.lines_before + i as u64 + 1
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Line `i` (from 0), without its newline.
    pub fn line(&self, i: usize) -> &[u8] {
        let (start, end) = self.lines[i];
        &self.bytes[start..end]
    }

    /// The bytes lines `range` span.
    pub fn span_bytes(&self, range: Range<usize>) -> usize {
        match (
            self.lines.get(range.start),
            range.end.checked_sub(1).and_then(|l| self.lines.get(l)),
        ) {
            (Some(first), Some(last)) if range.end > range.start => last.1 - first.0,
            _ => 0,
        }
    }
}

/// A file read in chunks of whole lines, so that reading it takes memory for a chunk (and its
/// longest line), not for the file: a batch source of any size.
pub struct LineChunks {
    source_name: String,
    file: FileRef,
    size: u64,
    read: u64,
    /// The start of a line the last chunk cut.
    carry: Vec<u8>,
    lines_before: u64,
    chunk_bytes: u64,
}

impl LineChunks {
    /// Bytes read at a time.
    pub const CHUNK_BYTES: u64 = 8 << 20;

    /// Opens `file` (of `source_name`, for messages).
    pub async fn open(source_name: &str, file: FileRef) -> Result<Self> {
        Ok(Self {
            source_name: source_name.to_string(),
            size: file_size(source_name, &file).await?,
            file,
            read: 0,
            carry: Vec::new(),
            lines_before: 0,
            chunk_bytes: Self::CHUNK_BYTES,
        })
    }

    /// Reads `bytes` at a time instead of [`Self::CHUNK_BYTES`].
    pub fn with_chunk_bytes(mut self, bytes: u64) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// The next chunk of whole lines; `None` at the end of the file.
    pub async fn next(&mut self) -> Result<Option<LinesFile>> {
        loop {
            if self.read >= self.size {
                if self.carry.is_empty() {
                    return Ok(None);
                }
                // The last line, without a newline.
                let last = std::mem::take(&mut self.carry);
                return Ok(Some(self.chunk(last)));
            }
            let end = (self.read + self.chunk_bytes).min(self.size);
            let bytes = self
                .file
                .store
                .get_range(&self.file.path, self.read..end)
                .await
                .map_err(|e| read_error(&self.source_name, &self.file, e))?;
            self.read = end;
            let mut chunk = std::mem::take(&mut self.carry);
            chunk.extend_from_slice(&bytes);
            if self.read < self.size {
                match memchr::memrchr(b'\n', &chunk) {
                    Some(last_newline) => {
                        self.carry = chunk.split_off(last_newline + 1);
                    }
                    None => {
                        // A line longer than a chunk: read on until it ends.
                        self.carry = chunk;
                        continue;
                    }
                }
            }
            return Ok(Some(self.chunk(chunk)));
        }
    }

    fn chunk(&mut self, bytes: Vec<u8>) -> LinesFile {
        let mut lines = LinesFile::new(self.file.shown.clone(), Bytes::from(bytes));
        lines.lines_before = self.lines_before;
        self.lines_before += lines.len() as u64;
        lines
    }
}

/// A file read through [`std::io::Read`], a range of [`LineChunks::CHUNK_BYTES`] at a time, for
/// a parser that pulls its bytes (CSV) on a blocking thread: each range is fetched on the
/// runtime the reader was opened in. Reading takes memory for one range, not for the file. A
/// failed fetch is an I/O error carrying the source's [`Error`] (with the file's name).
pub struct BlockingFileRead {
    source_name: String,
    file: FileRef,
    runtime: tokio::runtime::Handle,
    size: u64,
    read: u64,
    range: Bytes,
    range_bytes: u64,
}

impl BlockingFileRead {
    /// Opens `file` (of `source_name`, for messages); call from the runtime.
    pub async fn open(source_name: &str, file: FileRef) -> Result<Self> {
        Ok(Self {
            source_name: source_name.to_string(),
            size: file_size(source_name, &file).await?,
            file,
            runtime: tokio::runtime::Handle::current(),
            read: 0,
            range: Bytes::new(),
            range_bytes: LineChunks::CHUNK_BYTES,
        })
    }

    /// Fetches `bytes` at a time instead of [`LineChunks::CHUNK_BYTES`].
    pub fn with_range_bytes(mut self, bytes: u64) -> Self {
        self.range_bytes = bytes.max(1);
        self
    }
}

impl std::io::Read for BlockingFileRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.range.is_empty() {
            if self.read >= self.size {
                return Ok(0);
            }
            let end = (self.read + self.range_bytes).min(self.size);
            let fetch = self.file.store.get_range(&self.file.path, self.read..end);
            self.range = self
                .runtime
                .block_on(fetch)
                .map_err(|e| std::io::Error::other(read_error(&self.source_name, &self.file, e)))?;
            self.read = end;
        }
        let n = buf.len().min(self.range.len());
        buf[..n].copy_from_slice(&self.range.split_to(n));
        Ok(n)
    }
}

/// Records from `DIR/<topic>.jsonl` files, read whole (or records held in memory, for
/// benchmarks).
pub struct FileInput {
    sources: BTreeMap<String, LinesFile>,
    /// Whether the records are JSON lines whatever the sources' format (files are), rather
    /// than in the sources' own format.
    json_lines: bool,
}

impl FileInput {
    /// Reads every source's file from `dir` (a folder or URL, resolved against the lake).
    pub async fn open(pipeline: &StreamPipeline, lake: &Lake, dir: &str) -> Result<Self> {
        let folder = lake.location().resolve_folder(dir)?;
        let mut sources = BTreeMap::new();
        for source in &pipeline.sources {
            let url = folder
                .join(&format!("{}.jsonl", source.topic))
                .map_err(|e| Error::config(format!("--from-files {dir}: {e}")))?;
            let (store, path) = lake.object_store(&url)?;
            let file = FileRef {
                store,
                shown: shown(&url, &path),
                path,
            };
            let bytes = match get_bytes(&file).await {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::Source {
                        source_name: source.name.clone(),
                        location: file.shown.clone(),
                        message: format!(
                            "no such file: --from-files reads one JSON-lines file per topic, named {}.jsonl",
                            source.topic
                        ),
                        retryable: false,
                        cause: None,
                    });
                }
                Err(e) => return Err(read_error(&source.name, &file, e)),
            };
            sources.insert(source.name.clone(), LinesFile::new(file.shown, bytes));
        }
        Ok(Self {
            sources,
            json_lines: true,
        })
    }

    /// Records held in memory, per source: JSON objects (`json_lines`), or in the sources' own
    /// format (Protobuf messages for a Protobuf source). A replayable input without a file or a
    /// broker, for benchmarks.
    pub fn in_memory(records: BTreeMap<String, Vec<Vec<u8>>>, json_lines: bool) -> Self {
        let sources = records
            .into_iter()
            .map(|(source, values)| {
                let mut bytes = Vec::with_capacity(values.iter().map(Vec::len).sum());
                let mut lines = Vec::with_capacity(values.len());
                for value in values {
                    let start = bytes.len();
                    bytes.extend_from_slice(&value);
                    lines.push((start, bytes.len()));
                }
                let file = LinesFile {
                    shown: format!("memory:{source}"),
                    bytes: Bytes::from(bytes),
                    lines,
                    lines_before: 0,
                };
                (source, file)
            })
            .collect();
        Self { sources, json_lines }
    }

    /// Whether the records are JSON whatever the sources' declared format.
    pub fn json_lines(&self) -> bool {
        self.json_lines
    }

    fn position(positions: &Positions, source: &str) -> i64 {
        positions.get(source).and_then(|p| p.get(&0)).copied().unwrap_or(0)
    }

    /// The next lines of every file, each file advancing in proportion to its length so that
    /// the files' event times move on together.
    /// The micro-batch ends at `limit`: its records are cut back in the same proportion
    /// when their bytes exceed it.
    pub fn next(&self, positions: &Positions, limit: BatchLimit) -> InputBatch {
        let total: usize = self.sources.values().map(|f| f.len()).sum::<usize>().max(1);
        let mut shares = BTreeMap::new();
        let mut bytes = 0;
        for (name, file) in &self.sources {
            let position = Self::position(positions, name);
            let share = (limit.records * file.len()).div_ceil(total).max(1) as i64;
            let end = (position + share).min(file.len() as i64);
            bytes += file.span_bytes(position as usize..end as usize);
            shares.insert(name.clone(), (position, end));
        }
        let keep = if bytes > limit.bytes {
            limit.bytes as f64 / bytes as f64
        } else {
            1.0
        };
        let ranges = shares
            .into_iter()
            .map(|(name, (position, end))| {
                let end = if end > position {
                    // At least one record, so a record larger than the limit still moves on.
                    position + (((end - position) as f64 * keep) as i64).max(1)
                } else {
                    end
                };
                (name, BTreeMap::from([(0, (position, end))]))
            })
            .collect();
        self.read(&ranges)
    }

    fn read(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> InputBatch {
        let mut batch = InputBatch {
            ranges: ranges.clone(),
            ..Default::default()
        };
        for (name, partitions) in ranges {
            let Some(file) = self.sources.get(name) else { continue };
            let mut records = RawRecords::default();
            for (start, end) in partitions.values() {
                let (start, end) = (*start as usize, *end as usize);
                records.reserve(end - start, file.span_bytes(start..end));
                for line in start..end {
                    records.push(0, line as i64, None, None, file.line(line));
                }
            }
            batch.records.insert(name.clone(), records);
        }
        batch
    }

    /// The lines of a logged epoch again; an error when the files no longer hold them (they
    /// were replaced by shorter ones since the checkpoint was written).
    pub fn replay(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> Result<InputBatch> {
        for (name, partitions) in ranges {
            let Some(file) = self.sources.get(name) else { continue };
            for (start, end) in partitions.values() {
                if *start < 0 || start > end || *end as usize > file.len() {
                    return Err(Error::Source {
                        source_name: name.clone(),
                        location: file.shown.clone(),
                        message: format!(
                            "the checkpoint logged lines {start}..{end} but the file has {} lines: it changed since; \
                             `quickchat-etl checkpoints <pipeline> --reset` starts over",
                            file.len()
                        ),
                        retryable: false,
                        cause: None,
                    });
                }
            }
        }
        Ok(self.read(ranges))
    }

    /// Whether every file was read to its end.
    pub fn exhausted(&self, positions: &Positions) -> bool {
        self.sources
            .iter()
            .all(|(name, file)| Self::position(positions, name) >= file.len() as i64)
    }

    /// Per source: whether its file was read to its end by these ranges.
    pub fn idle(&self, ranges: &BTreeMap<String, BTreeMap<i32, (i64, i64)>>) -> BTreeMap<String, BTreeMap<i32, bool>> {
        ranges
            .iter()
            .filter_map(|(name, partitions)| {
                let file = self.sources.get(name)?;
                let idle = partitions
                    .iter()
                    .map(|(p, (_, end))| (*p, *end >= file.len() as i64))
                    .collect();
                Some((name.clone(), idle))
            })
            .collect()
    }

    /// Where every source starts: its file's first line.
    pub fn start_positions(&self) -> Positions {
        super::from_the_start(self.sources.keys())
    }
}

async fn file_size(source_name: &str, file: &FileRef) -> Result<u64> {
    let meta = file
        .store
        .head(&file.path)
        .await
        .map_err(|e| read_error(source_name, file, e))?;
    Ok(meta.size)
}

async fn get_bytes(file: &FileRef) -> std::result::Result<Bytes, object_store::Error> {
    // One read per file: object_store streams local files in 8 KiB chunks, each a task on the
    // blocking pool, which cost a quarter of the decode time in futex wake-ups.
    file.store.get(&file.path).await?.bytes().await
}

fn read_error(source_name: &str, file: &FileRef, e: object_store::Error) -> Error {
    let retryable = !matches!(
        e,
        object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. }
    );
    Error::Source {
        source_name: source_name.to_string(),
        location: file.shown.clone(),
        message: e.to_string(),
        retryable,
        cause: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_file_pulled_in_ranges_gives_its_bytes_once_and_a_vanished_file_names_itself() {
        let (dir, lake) = Lake::temporary();
        let text: Vec<u8> = (0..500u32)
            .flat_map(|i| format!("{i},\"a\nb\"\n").into_bytes())
            .collect();
        std::fs::write(dir.path().join("rows.csv"), &text).unwrap();
        let file = list_files("s", "rows.csv", &lake).await.unwrap().remove(0);
        for range_bytes in [1, 7, 4096, 1 << 30] {
            let mut input = BlockingFileRead::open("s", file.clone())
                .await
                .unwrap()
                .with_range_bytes(range_bytes);
            let read = tokio::task::spawn_blocking(move || {
                let mut read = Vec::new();
                std::io::Read::read_to_end(&mut input, &mut read).map(|_| read)
            });
            assert!(read.await.unwrap().unwrap() == text, "ranges of {range_bytes} bytes");
        }
        let input = BlockingFileRead::open("s", file).await.unwrap();
        std::fs::remove_file(dir.path().join("rows.csv")).unwrap();
        let err = tokio::task::spawn_blocking(move || std::io::Read::read(&mut { input }, &mut [0; 8]).unwrap_err());
        let err = err.await.unwrap().into_inner().unwrap().downcast::<Error>().unwrap();
        assert!(err.to_string().contains("rows.csv"), "{err}");
    }

    #[tokio::test]
    async fn a_file_read_in_chunks_gives_every_line_once_with_its_number() {
        let (dir, lake) = Lake::temporary();
        let text = "one\ntwo two\n\na line longer than a chunk\nfive\nsix, no newline";
        std::fs::write(dir.path().join("lines.jsonl"), text).unwrap();
        let file = list_files("s", "lines.jsonl", &lake).await.unwrap().remove(0);
        for chunk_bytes in [1, 5, 9, 1000] {
            let mut chunks = LineChunks::open("s", file.clone())
                .await
                .unwrap()
                .with_chunk_bytes(chunk_bytes);
            let mut lines = Vec::new();
            while let Some(chunk) = chunks.next().await.unwrap() {
                for i in 0..chunk.len() {
                    lines.push((chunk.line_number(i), String::from_utf8(chunk.line(i).to_vec()).unwrap()));
                }
            }
            let expected: Vec<(u64, String)> = text
                .split('\n')
                .map(String::from)
                .zip(1..)
                .map(|(l, n)| (n, l))
                .collect();
            assert_eq!(lines, expected, "chunks of {chunk_bytes} bytes");
        }
    }
}
