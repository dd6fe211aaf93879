//! Checkpoints under `<lake>/_checkpoints/<pipeline>/<input>/`:
//!
//! - `offsets/<epoch>.json`: what an epoch reads, written *before* it is processed;
//! - `commits/<epoch>.json`: written once the epoch's sinks have all committed;
//! - `state/<epoch>/`: a snapshot of the state after an epoch (Arrow IPC files, then
//!   `meta.json`, written last: a snapshot without it is incomplete and ignored).
//!
//! A restart loads the latest snapshot, replays the epochs logged after it (their sinks skip
//! what they already hold) and goes on. `checkpoints <pipeline> --cleanup --keep N` removes
//! snapshots older than the N latest and the logs only they needed.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::ingest::EventTimeProgress;
use super::records::{EpochRange, Positions};
use crate::catalog::Lake;
use crate::error::{Error, Result};

/// The checkpoint folder of one pipeline and input.
pub struct Checkpoints {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    shown: String,
}

/// The record that an epoch's sinks all committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Commit {
    /// The epoch.
    pub epoch: u64,
    /// Positions after it.
    pub positions: Positions,
    /// When, RFC 3339.
    pub committed_at: String,
}

/// The state of a pipeline after an epoch.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The epoch it follows.
    pub epoch: u64,
    /// Identifies this checkpoint's run from its first epoch on: sinks record epochs under it,
    /// so a run started over (`--reset`) is not mistaken for a replay.
    pub lineage: String,
    /// Positions after it.
    pub positions: Positions,
    /// The generator's first event time, for `--from-generator` runs.
    pub generator_start_ms: Option<i64>,
    /// Per source: latest event times per partition, and the watermark.
    pub event_time: BTreeMap<String, EventTimeProgress>,
    /// Per source: remembered keys (hash, event time).
    pub keys: BTreeMap<String, Vec<(u128, i64)>>,
    /// Per joined source: rows kept for joins.
    pub buffers: BTreeMap<String, Vec<RecordBatch>>,
    /// Per output: aggregate states.
    pub windows: BTreeMap<String, Vec<RecordBatch>>,
    /// Per output: rows waiting for a joined stream.
    pub pending: BTreeMap<String, Vec<RecordBatch>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotMeta {
    epoch: u64,
    #[serde(default)]
    lineage: String,
    positions: Positions,
    generator_start_ms: Option<i64>,
    #[serde(default)]
    event_time: BTreeMap<String, EventTimeProgress>,
    /// The Arrow files of the snapshot, by role (`keys/<source>`, `windows/<output>`, ...).
    files: Vec<String>,
}

fn epoch_name(epoch: u64) -> String {
    format!("{epoch:020}")
}

impl Checkpoints {
    /// The checkpoint folder of `pipeline` for runs from `input` (`kafka`, `files`, `generator`).
    pub fn new(lake: &Lake, pipeline: &str, input: &str) -> Result<Self> {
        let url = lake
            .location()
            .resolve_folder(&format!("_checkpoints/{pipeline}/{input}"))?;
        let (store, root) = lake.object_store(&url)?;
        Ok(Self {
            store,
            root,
            shown: url.to_string(),
        })
    }

    /// The checkpoint folder, for messages.
    pub fn location(&self) -> &str {
        &self.shown
    }

    fn path(&self, parts: &[&str]) -> ObjectPath {
        parts.iter().fold(self.root.clone(), |path, part| path.join(*part))
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Lake {
            location: self.shown.clone(),
            message: format!("checkpoint: {e}"),
        }
    }

    async fn put(&self, path: ObjectPath, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn get(&self, path: &ObjectPath) -> Result<Option<bytes::Bytes>> {
        match self.store.get(path).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(|e| self.error(e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Epoch numbers found under a folder (`offsets`, `commits`, `state`), ascending.
    async fn epochs(&self, folder: &str) -> Result<Vec<u64>> {
        let prefix = self.path(&[folder]);
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let names = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .chain(
                listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename().map(str::to_string)),
            );
        let mut epochs: Vec<u64> = names.filter_map(|n| n.trim_end_matches(".json").parse().ok()).collect();
        epochs.sort_unstable();
        epochs.dedup();
        Ok(epochs)
    }

    /// Epochs with a complete snapshot (its `meta.json` written), ascending. Folders left empty
    /// by a cleanup on a local disk do not count.
    async fn snapshot_epochs(&self) -> Result<Vec<u64>> {
        let prefix = self.path(&["state"]);
        let paths: Vec<ObjectPath> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(self.error(e)),
            })?;
        let mut epochs: Vec<u64> = paths
            .iter()
            .filter(|p| p.filename() == Some("meta.json"))
            .filter_map(|p| p.parts().rev().nth(1)?.as_ref().parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Logs what an epoch is about to read.
    pub async fn write_offsets(&self, range: &EpochRange) -> Result<()> {
        let json = serde_json::to_vec_pretty(range).map_err(|e| self.error(e))?;
        self.put(
            self.path(&["offsets", &format!("{}.json", epoch_name(range.epoch))]),
            json,
        )
        .await
    }

    /// What an epoch read, if it was logged.
    pub async fn read_offsets(&self, epoch: u64) -> Result<Option<EpochRange>> {
        let path = self.path(&["offsets", &format!("{}.json", epoch_name(epoch))]);
        match self.get(&path).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| self.error(e))?)),
            None => Ok(None),
        }
    }

    /// Logs that an epoch's sinks all committed.
    pub async fn write_commit(&self, commit: &Commit) -> Result<()> {
        let json = serde_json::to_vec_pretty(commit).map_err(|e| self.error(e))?;
        self.put(
            self.path(&["commits", &format!("{}.json", epoch_name(commit.epoch))]),
            json,
        )
        .await
    }

    /// The latest committed epoch.
    pub async fn last_commit(&self) -> Result<Option<Commit>> {
        let Some(epoch) = self.epochs("commits").await?.pop() else {
            return Ok(None);
        };
        let bytes = self
            .get(&self.path(&["commits", &format!("{}.json", epoch_name(epoch))]))
            .await?;
        match bytes {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| self.error(e))?)),
            None => Ok(None),
        }
    }

    /// The latest logged epoch (committed or not).
    pub async fn last_logged_epoch(&self) -> Result<Option<u64>> {
        Ok(self.epochs("offsets").await?.pop())
    }

    /// Saves a snapshot: its Arrow files first, `meta.json` last.
    pub async fn write_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let folder = epoch_name(snapshot.epoch);
        let mut files = Vec::new();
        let mut groups: Vec<(String, Vec<RecordBatch>)> = Vec::new();
        for (source, keys) in &snapshot.keys {
            groups.push((format!("keys/{source}"), vec![keys_batch(keys)]));
        }
        for (kind, map) in [
            ("buffers", &snapshot.buffers),
            ("windows", &snapshot.windows),
            ("pending", &snapshot.pending),
        ] {
            for (name, batches) in map {
                groups.push((format!("{kind}/{name}"), batches.clone()));
            }
        }
        for (role, batches) in groups {
            let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
            let Some(first) = batches.first() else { continue };
            let mut bytes = Vec::new();
            {
                let mut writer = FileWriter::try_new(&mut bytes, &first.schema()).map_err(|e| self.error(e))?;
                for batch in &batches {
                    writer.write(batch).map_err(|e| self.error(e))?;
                }
                writer.finish().map_err(|e| self.error(e))?;
            }
            let file_name = format!("{}.arrow", role.replace('/', "-"));
            self.put(self.path(&["state", &folder, &file_name]), bytes).await?;
            files.push(role);
        }
        let meta = SnapshotMeta {
            epoch: snapshot.epoch,
            lineage: snapshot.lineage.clone(),
            positions: snapshot.positions.clone(),
            generator_start_ms: snapshot.generator_start_ms,
            event_time: snapshot.event_time.clone(),
            files,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| self.error(e))?;
        self.put(self.path(&["state", &folder, "meta.json"]), json).await
    }

    /// The latest complete snapshot at or before `epoch`.
    pub async fn latest_snapshot(&self, epoch: u64) -> Result<Option<Snapshot>> {
        for candidate in self.snapshot_epochs().await?.into_iter().rev().filter(|e| *e <= epoch) {
            let folder = epoch_name(candidate);
            let Some(bytes) = self.get(&self.path(&["state", &folder, "meta.json"])).await? else {
                continue;
            };
            let meta: SnapshotMeta = serde_json::from_slice(&bytes).map_err(|e| self.error(e))?;
            let mut snapshot = Snapshot {
                epoch: meta.epoch,
                lineage: meta.lineage,
                positions: meta.positions,
                generator_start_ms: meta.generator_start_ms,
                event_time: meta.event_time,
                ..Default::default()
            };
            for role in meta.files {
                let file_name = format!("{}.arrow", role.replace('/', "-"));
                let bytes = self
                    .get(&self.path(&["state", &folder, &file_name]))
                    .await?
                    .ok_or_else(|| self.error(format!("{role} missing")))?;
                let reader =
                    FileReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).map_err(|e| self.error(e))?;
                let batches: Vec<RecordBatch> = reader
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| self.error(e))?;
                let (kind, name) = role
                    .split_once('/')
                    .ok_or_else(|| self.error(format!("bad role {role}")))?;
                let name = name.to_string();
                match kind {
                    "keys" => {
                        snapshot.keys.insert(name, batches.iter().flat_map(keys_of).collect());
                    }
                    "buffers" => {
                        snapshot.buffers.insert(name, batches);
                    }
                    "windows" => {
                        snapshot.windows.insert(name, batches);
                    }
                    "pending" => {
                        snapshot.pending.insert(name, batches);
                    }
                    other => return Err(self.error(format!("unknown snapshot part {other}"))),
                }
            }
            return Ok(Some(snapshot));
        }
        Ok(None)
    }

    /// Removes snapshots older than the `keep` latest, and offsets and commits older than the
    /// oldest snapshot kept. Returns how many files were removed.
    pub async fn cleanup(&self, keep: usize) -> Result<usize> {
        let snapshots = self.snapshot_epochs().await?;
        if snapshots.len() <= keep.max(1) {
            return Ok(0);
        }
        let oldest_kept = snapshots[snapshots.len() - keep.max(1)];
        let mut removed = 0;
        for epoch in snapshots.iter().filter(|e| **e < oldest_kept) {
            removed += self.remove_prefix(&self.path(&["state", &epoch_name(*epoch)])).await?;
        }
        for folder in ["offsets", "commits"] {
            for epoch in self.epochs(folder).await?.into_iter().filter(|e| *e < oldest_kept) {
                self.store
                    .delete(&self.path(&[folder, &format!("{}.json", epoch_name(epoch))]))
                    .await
                    .map_err(|e| self.error(e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes every checkpoint file; returns how many.
    pub async fn remove_all(&self) -> Result<usize> {
        self.remove_prefix(&self.root).await
    }

    async fn remove_prefix(&self, prefix: &ObjectPath) -> Result<usize> {
        let paths: Vec<ObjectPath> = self
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        for path in &paths {
            self.store.delete(path).await.map_err(|e| self.error(e))?;
        }
        Ok(paths.len())
    }

    /// Epochs with a snapshot, and the latest committed epoch, for `checkpoints` listings.
    pub async fn summary(&self) -> Result<(Vec<u64>, Option<u64>, usize)> {
        let commits = self.epochs("commits").await?;
        Ok((self.snapshot_epochs().await?, commits.last().copied(), commits.len()))
    }
}

fn keys_batch(keys: &[(u128, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("hash_high", DataType::UInt64, false),
        Field::new("hash_low", DataType::UInt64, false),
        Field::new("event_time", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(UInt64Array::from_iter_values(
                keys.iter().map(|(k, _)| (k >> 64) as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(keys.iter().map(|(k, _)| *k as u64))),
            Arc::new(Int64Array::from_iter_values(keys.iter().map(|(_, t)| *t))),
        ],
    )
    .expect("key columns match")
}

fn keys_of(batch: &RecordBatch) -> Vec<(u128, i64)> {
    use arrow::array::AsArray;
    let high = batch.column(0).as_primitive::<arrow::datatypes::UInt64Type>();
    let low = batch.column(1).as_primitive::<arrow::datatypes::UInt64Type>();
    let times = batch.column(2).as_primitive::<arrow::datatypes::Int64Type>();
    (0..batch.num_rows())
        .map(|i| {
            (
                (u128::from(high.value(i)) << 64) | u128::from(low.value(i)),
                times.value(i),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::stream::pipeline::tests::{rows, source};

    #[tokio::test]
    async fn logs_and_snapshots_round_trip_and_cleanup_keeps_what_replay_needs() {
        let (_dir, lake) = Lake::temporary();
        let checkpoints = Checkpoints::new(&lake, "p", "files").unwrap();
        assert!(checkpoints.last_commit().await.unwrap().is_none());
        let source = source("clicks", "ts", Some("id"));
        for epoch in 1..=5u64 {
            let range = EpochRange {
                epoch,
                ranges: BTreeMap::from([(
                    "clicks".into(),
                    BTreeMap::from([(0, (epoch as i64 * 10 - 10, epoch as i64 * 10))]),
                )]),
                end_of_input: false,
                idle: BTreeMap::new(),
            };
            checkpoints.write_offsets(&range).await.unwrap();
            let positions = range.end_positions(&Positions::new());
            checkpoints
                .write_commit(&Commit {
                    epoch,
                    positions: positions.clone(),
                    committed_at: "now".into(),
                })
                .await
                .unwrap();
            if epoch % 2 == 0 {
                let snapshot = Snapshot {
                    epoch,
                    positions,
                    keys: BTreeMap::from([("clicks".into(), vec![(u128::MAX - 1, 42), (7, -1)])]),
                    windows: BTreeMap::from([("q".into(), vec![rows(&source, &[("a", 1), ("b", 2)])])]),
                    event_time: BTreeMap::from([(
                        "clicks".into(),
                        EventTimeProgress {
                            max_event_times: BTreeMap::from([(0, 99), (2, 120)]),
                            watermark: Some(42),
                        },
                    )]),
                    ..Default::default()
                };
                checkpoints.write_snapshot(&snapshot).await.unwrap();
            }
        }
        assert_eq!(checkpoints.last_commit().await.unwrap().unwrap().epoch, 5);
        let snapshot = checkpoints.latest_snapshot(5).await.unwrap().unwrap();
        assert_eq!(snapshot.epoch, 4);
        assert_eq!(snapshot.keys["clicks"], vec![(u128::MAX - 1, 42), (7, -1)]);
        assert_eq!(snapshot.windows["q"][0].num_rows(), 2);
        assert_eq!(snapshot.event_time["clicks"].max_event_times[&2], 120);
        assert_eq!(snapshot.event_time["clicks"].watermark, Some(42));
        assert_eq!(checkpoints.read_offsets(5).await.unwrap().unwrap().records(), 10);

        let removed = checkpoints.cleanup(1).await.unwrap();
        assert!(removed >= 4, "{removed}");
        assert_eq!(checkpoints.latest_snapshot(5).await.unwrap().unwrap().epoch, 4);
        assert!(
            checkpoints.read_offsets(5).await.unwrap().is_some(),
            "logs after the kept snapshot stay"
        );
        assert!(checkpoints.read_offsets(3).await.unwrap().is_none());
    }
}
