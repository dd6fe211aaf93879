//! [`LocalStore`]: the object store deltalake uses for tables in a local folder, with a log
//! listing whose cost per `_delta_log` entry is a directory read and a name comparison.
//!
//! Every Delta commit lists the table's `_delta_log` from the version it knows (twice, in the
//! commit and in the snapshot update after it). object_store's local listing turns each
//! entry of the folder into a URL and an object path before it compares the entry with the
//! offset, ~2.5 µs an entry on this machine: a streaming table that keeps a day of log entries
//! at a 1 s trigger (86,400 of them) spent ~0.4 s of every commit listing entries it then threw
//! away (`perf` on `bench --only commits`: percent-encoding, `PathPart::parse`, `walkdir`,
//! malloc at the top). This store compares the folder's raw names with the offset first and
//! asks the file system about the few newer ones only; anything it does not recognise (a name
//! needing encoding, no folder path) goes to object_store's own listing, so the answer is the
//! same in every case.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Once};

use bytes::Bytes;
use deltalake::DeltaResult;
use deltalake::logstore::{
    DeltaIOStorageBackend, ObjectStoreFactory, ObjectStoreRef, StorageConfig, object_store_factories,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    ObjectStoreScheme, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use url::Url;

/// Makes deltalake open `file://` tables through [`LocalStore`]; once per process.
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        object_store_factories().insert(Url::parse("file://").expect("a URL"), Arc::new(LocalStoreFactory));
    });
}

struct LocalStoreFactory;

impl ObjectStoreFactory for LocalStoreFactory {
    fn parse_url_opts(&self, url: &Url, config: &StorageConfig) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (_, path) = ObjectStoreScheme::parse(url).map_err(object_store::Error::from)?;
        let mut store: ObjectStoreRef = Arc::new(LocalStore::default());
        if let Some(runtime) = &config.runtime {
            store = Arc::new(DeltaIOStorageBackend::new(store, runtime.clone()));
        }
        Ok((store, path))
    }
}

/// object_store's [`LocalFileSystem`] (rooted at `/`) with a cheaper `list_with_offset`.
#[derive(Debug, Default)]
pub struct LocalStore {
    files: Arc<LocalFileSystem>,
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.files)
    }
}

/// An entry of a listed folder that sorts after the offset.
enum Newer {
    File(Path),
    /// A subfolder: listed by object_store (it filters its entries by the offset itself).
    Folder(Path),
}

/// The entries of `folder` (the file-system path of `prefix`) after `offset`, or `None` when a
/// name is not one this comparison can decide without object_store's encoding.
fn newer_entries(folder: &std::path::Path, prefix: &Path, offset: &Path) -> Option<std::io::Result<Vec<Newer>>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Ok(Vec::new())),
        Err(e) => return Some(Err(e)),
    };
    // Entries are compared by name with the offset's name inside `prefix` (the same order as
    // the whole paths, which share `prefix/`); a path is built for the newer ones only.
    let inside = match offset.as_ref().strip_prefix(prefix.as_ref()) {
        Some(rest) if prefix.as_ref().is_empty() => Some(rest),
        Some(rest) => rest.strip_prefix('/'),
        None => None,
    };
    let mut newer = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(Err(e)),
        };
        let name = entry.file_name();
        let name = name.to_str()?;
        let (stem, temporary) = match name.split_once('#') {
            Some((stem, suffix)) => (stem, !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())),
            None => (name, false),
        };
        if temporary {
            // object_store's own in-flight upload (`<name>#<n>`): never listed.
            continue;
        }
        if name.is_empty() || !stem.bytes().all(plain_name_byte) || stem.len() != name.len() {
            return None;
        }
        let location = || {
            Path::from(format!(
                "{prefix}{}{name}",
                if prefix.as_ref().is_empty() { "" } else { "/" }
            ))
        };
        let after_offset = || match inside {
            Some(offset_name) => name > offset_name,
            None => location().as_ref() > offset.as_ref(),
        };
        let file_type = match entry.file_type() {
            Ok(t) if t.is_symlink() => match std::fs::metadata(entry.path()) {
                Ok(m) => m.file_type(),
                Err(_) => continue,
            },
            Ok(t) => t,
            Err(_) => continue,
        };
        if file_type.is_dir() {
            newer.push(Newer::Folder(location()));
        } else if file_type.is_file() && after_offset() {
            newer.push(Newer::File(location()));
        }
    }
    Some(Ok(newer))
}

/// Bytes a file name may hold for its object path to be the name itself.
fn plain_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.files.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.files.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.files.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.files.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.files.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.files.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(prefix) = prefix.filter(|p| !p.as_ref().is_empty()).cloned() else {
            return self.files.list_with_offset(prefix, offset);
        };
        let Ok(folder) = self.files.path_to_filesystem(&prefix) else {
            return self.files.list_with_offset(Some(&prefix), offset);
        };
        let (files, offset) = (Arc::clone(&self.files), offset.clone());
        stream::once(async move {
            let (read_prefix, read_offset) = (prefix.clone(), offset.clone());
            let newer = tokio::task::spawn_blocking(move || newer_entries(&folder, &read_prefix, &read_offset))
                .await
                .map_err(|e| object_store::Error::JoinError { source: e })?;
            let entries = match newer {
                None => return Ok(files.list_with_offset(Some(&prefix), &offset)),
                Some(Err(source)) => {
                    return Err(object_store::Error::Generic {
                        store: "LocalStore",
                        source: format!("listing {prefix}: {source}").into(),
                    });
                }
                Some(Ok(entries)) => entries,
            };
            let listed = stream::iter(entries)
                .then(move |entry| {
                    let (files, offset) = (Arc::clone(&files), offset.clone());
                    async move {
                        match entry {
                            Newer::File(location) => match files.head(&location).await {
                                Ok(meta) => stream::iter(vec![Ok(meta)]).boxed(),
                                // Removed since the folder was read (log expiry, VACUUM).
                                Err(object_store::Error::NotFound { .. }) => stream::empty().boxed(),
                                Err(e) => stream::iter(vec![Err(e)]).boxed(),
                            },
                            Newer::Folder(folder) => files.list_with_offset(Some(&folder), &offset),
                        }
                    }
                })
                .flatten()
                .boxed();
            Ok(listed)
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.files.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.files.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.files.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listed(store: &dyn ObjectStore, prefix: &Path, offset: &Path) -> Vec<(String, u64, Option<String>)> {
        let mut listed: Vec<_> = store
            .list_with_offset(Some(prefix), offset)
            .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
            .try_collect()
            .await
            .unwrap();
        listed.sort();
        listed
    }

    fn write(path: std::path::PathBuf, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    #[tokio::test]
    async fn lists_what_object_store_lists_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("table/_delta_log");
        for version in 0..30u64 {
            write(
                log.join(format!("{version:020}.json")),
                &vec![b'x'; version as usize + 1],
            );
        }
        write(log.join(format!("{:020}.checkpoint.parquet", 20)), b"parquet");
        write(log.join("_last_checkpoint"), b"{}");
        write(log.join(format!("{:020}.json#3", 30)), b"in flight");
        write(log.join("_staged_commits/00000000000000000031.uuid.json"), b"staged");
        write(log.join("_staged_commits/00000000000000000001.uuid.json"), b"old");
        let (ours, theirs) = (LocalStore::default(), LocalFileSystem::new());
        let prefix = Path::from_filesystem_path(&log).unwrap();
        for version in [0u64, 19, 20, 29, 40] {
            let offset = Path::from(format!("{prefix}/{version:020}"));
            let expected = listed(&theirs, &prefix, &offset).await;
            assert_eq!(
                listed(&ours, &prefix, &offset).await,
                expected,
                "after version {version}"
            );
            assert!(!expected.is_empty(), "something sorts after {offset}");
        }
        // A name that needs encoding in an object path: object_store's own listing answers.
        write(log.join(format!("{:020}.json copy", 25)), b"odd");
        let offset = Path::from(format!("{prefix}/{:020}", 10));
        let expected = listed(&theirs, &prefix, &offset).await;
        assert!(expected.iter().any(|(p, ..)| p.ends_with("copy")));
        assert_eq!(listed(&ours, &prefix, &offset).await, expected);
        // A folder that does not exist lists nothing.
        let missing = Path::from_filesystem_path(dir.path()).unwrap().join("nothing");
        assert!(listed(&ours, &missing, &offset).await.is_empty());
    }
}
