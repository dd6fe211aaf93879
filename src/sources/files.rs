//! File sources: one file or a folder of files, on the local disk or S3, resolved against the
//! lake root. JSON lines are streamed chunk by chunk; CSV files are read whole.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use super::RejectedRecord;
use super::json_lines::{Decoded, Dialect, JsonDecoder};
use super::{SourceBatches, SourceContext, csv};
use crate::error::{Error, Result};
use crate::jobs::Source;

/// A file to read: its store, its path in the store and how to show it.
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
pub async fn list_files(source: &Source, path: &str, cx: SourceContext<'_>) -> Result<Vec<FileRef>> {
    let url = cx.lake.location().resolve(path)?;
    let (store, object_path) = cx.lake.object_store(&url)?;
    let source_error = |message: String| Error::Source {
        source_name: source.name.clone(),
        location: shown(&url, &object_path),
        message,
        retryable: false,
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

/// Reads JSON lines (plain or Mongo Extended JSON) from a file or folder.
pub async fn read_json_lines(
    source: &Source,
    path: &str,
    dialect: Dialect,
    cx: SourceContext<'_>,
) -> Result<SourceBatches> {
    let files = list_files(source, path, cx).await?;
    let mut out = SourceBatches {
        files: files.len(),
        location: path.to_string(),
        ..Default::default()
    };
    for file in &files {
        let mut decoder = JsonDecoder::new(source.schema.clone(), dialect);
        // One read per file: object_store streams local files in 8 KiB chunks, each a task on
        // the blocking pool, which cost a quarter of the decode time in futex wake-ups.
        let bytes = read_whole(source, file).await?;
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            decoder.push(index as u64 + 1, line);
        }
        let Decoded { batches, rejected, .. } = decoder.finish();
        out.batches.extend(batches);
        out.rejected.extend(
            rejected
                .into_iter()
                .map(|r| RejectedRecord::new(format!("{}:{}", file.shown, r.id), r.reason, &r.raw)),
        );
    }
    Ok(out)
}

/// Reads CSV files with a header row from a file or folder.
pub async fn read_csv(source: &Source, path: &str, cx: SourceContext<'_>) -> Result<SourceBatches> {
    let files = list_files(source, path, cx).await?;
    let mut out = SourceBatches {
        files: files.len(),
        location: path.to_string(),
        ..Default::default()
    };
    for file in &files {
        let bytes = read_whole(source, file).await?;
        let (batches, rejected) =
            csv::decode(&source.schema, &bytes, &file.shown).map_err(|message| Error::Source {
                source_name: source.name.clone(),
                location: file.shown.clone(),
                message,
                retryable: false,
            })?;
        out.batches.extend(batches);
        out.rejected.extend(rejected);
    }
    Ok(out)
}

async fn read_whole(source: &Source, file: &FileRef) -> Result<Bytes> {
    let result = file
        .store
        .get(&file.path)
        .await
        .map_err(|e| read_error(source, file, e))?;
    result.bytes().await.map_err(|e| read_error(source, file, e))
}

fn read_error(source: &Source, file: &FileRef, e: object_store::Error) -> Error {
    let retryable = !matches!(
        e,
        object_store::Error::NotFound { .. } | object_store::Error::PermissionDenied { .. }
    );
    Error::Source {
        source_name: source.name.clone(),
        location: file.shown.clone(),
        message: e.to_string(),
        retryable,
    }
}
