//! Checkpoints under `<lake>/_checkpoints/<pipeline>/<input>/`:
//!
//! - `offsets/<epoch>.json`: what an epoch reads, written *before* it is processed;
//! - `commits/<epoch>.json`: written once the epoch's sinks have all committed;
//! - `state/<epoch>.snapshot`: the whole state after an epoch — a [`Snapshot`]: one serde
//!   struct holding each operator's own state struct, written in one object (so a snapshot is
//!   there whole or not at all), state rows inside as Arrow IPC.
//!
//! A restart loads the latest snapshot, replays the epochs logged after it (their sinks skip
//! what they already hold) and goes on. A run keeps the `[state] keep_snapshots` latest
//! snapshots, removing older ones and the logs only they needed after each snapshot it saves;
//! `checkpoints <pipeline> --cleanup --keep N` does the same from the command line.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::alerts::AlertState;
use super::ingest::IngestState;
use super::join_buffer::JoinBufferState;
use super::operator::OperatorState;
use crate::catalog::Lake;
use crate::error::{Error, Result};
use crate::retry::Retries;
use crate::sources::positions::{EpochRange, Positions};

/// The snapshot format this build writes and reads. Snapshots of other formats (the per-part
/// files of earlier builds) are refused with the way out: `checkpoints <pipeline> --reset`.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The checkpoint folder of one pipeline and input.
#[derive(Clone)]
pub struct Checkpoints {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    shown: String,
    pipeline: String,
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// The epoch it follows.
    pub epoch: u64,
    /// Identifies this checkpoint's run from its first epoch on: sinks record epochs under it,
    /// so a run started over (`--reset`) is not mistaken for a replay.
    pub lineage: String,
    /// Positions after it.
    pub positions: Positions,
    /// The generator's first event time, for `--from-generator` runs.
    pub generator_start_ms: Option<i64>,
    /// Per source: watermark progress and remembered keys.
    pub sources: BTreeMap<String, IngestState>,
    /// Per joined source: rows kept for joins.
    pub join_buffers: BTreeMap<String, JoinBufferState>,
    /// Per output: its operator's state.
    pub outputs: BTreeMap<String, OperatorState>,
    /// The alert keys already raised.
    pub alerts: AlertState,
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
            pipeline: pipeline.to_string(),
        })
    }

    /// The checkpoint folder, for messages.
    pub fn location(&self) -> &str {
        &self.shown
    }

    fn path(&self, parts: &[&str]) -> ObjectPath {
        parts.iter().fold(self.root.clone(), |path, part| path.join(*part))
    }

    /// Reading or writing the checkpoint failed (storage away: may pass).
    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Lake {
            location: self.shown.clone(),
            message: format!("checkpoint: {e}"),
        }
    }

    /// The checkpoint holds something this build cannot use: retrying cannot help.
    pub fn damaged(&self, message: impl std::fmt::Display) -> Error {
        Error::State {
            location: self.shown.clone(),
            message: format!(
                "{message}; `quickchat-etl checkpoints {} --reset` starts over from the configured starting offsets",
                self.pipeline
            ),
        }
    }

    /// Writes a checkpoint file, again while the storage is away or full (per the process's
    /// retry policy): a file is whole or absent, and writing it twice writes the same bytes.
    async fn put(&self, path: ObjectPath, bytes: Vec<u8>) -> Result<()> {
        let payload = PutPayload::from(bytes);
        let mut retries = Retries::new(crate::retry::operation::CHECKPOINT_WRITE, crate::retry::policy());
        loop {
            let failed = match self.store.put(&path, payload.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => self.error(format!("{path}: {e}")),
            };
            if let Some(given_up) = retries.wait_after(&format!("writing checkpoint {path}"), failed).await {
                return Err(given_up);
            }
        }
    }

    async fn get(&self, path: &ObjectPath) -> Result<Option<bytes::Bytes>> {
        let mut retries = Retries::new(crate::retry::operation::CHECKPOINT_READ, crate::retry::policy());
        loop {
            let read = match self.store.get(path).await {
                Ok(result) => result.bytes().await,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => Err(e),
            };
            let failed = match read {
                Ok(bytes) => return Ok(Some(bytes)),
                Err(e) => self.error(format!("{path}: {e}")),
            };
            if let Some(given_up) = retries.wait_after(&format!("reading checkpoint {path}"), failed).await {
                return Err(given_up);
            }
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &ObjectPath) -> Result<Option<T>> {
        match self.get(path).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.damaged(format!("{path} does not parse: {e}"))),
            None => Ok(None),
        }
    }

    /// Epoch numbers of the files under a folder (`offsets`, `commits`, `state`), ascending.
    async fn epochs(&self, folder: &str, suffix: &str) -> Result<Vec<u64>> {
        let prefix = self.path(&[folder]);
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e)),
        };
        let mut epochs: Vec<u64> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename()?.strip_suffix(suffix)?.parse().ok())
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
        self.json(&self.path(&["offsets", &format!("{}.json", epoch_name(epoch))]))
            .await
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
        let Some(epoch) = self.epochs("commits", ".json").await?.pop() else {
            return Ok(None);
        };
        self.json(&self.path(&["commits", &format!("{}.json", epoch_name(epoch))]))
            .await
    }

    /// The latest logged epoch (committed or not).
    pub async fn last_logged_epoch(&self) -> Result<Option<u64>> {
        Ok(self.epochs("offsets", ".json").await?.pop())
    }

    /// Saves a snapshot, in one object.
    /// Encoding a large state takes a while (Arrow IPC of every state row): it runs on a
    /// blocking thread, off the runtime's workers.
    pub async fn write_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let name = format!("{}.snapshot", epoch_name(snapshot.epoch));
        let bytes = tokio::task::spawn_blocking(move || postcard::to_stdvec(&snapshot))
            .await
            .map_err(|e| self.error(format!("encoding the state: {e}")))?
            .map_err(|e| self.error(format!("encoding the state: {e}")))?;
        self.put(self.path(&["state", &name]), bytes).await
    }

    /// The latest snapshot at or before `epoch`.
    pub async fn latest_snapshot(&self, epoch: u64) -> Result<Option<Snapshot>> {
        self.refuse_older_formats().await?;
        let Some(found) = self
            .epochs("state", ".snapshot")
            .await?
            .into_iter()
            .rev()
            .find(|e| *e <= epoch)
        else {
            return Ok(None);
        };
        let path = self.path(&["state", &format!("{}.snapshot", epoch_name(found))]);
        let bytes = self
            .get(&path)
            .await?
            .ok_or_else(|| self.error(format!("{path} vanished while reading")))?;
        let snapshot: Snapshot = postcard::from_bytes(&bytes)
            .map_err(|e| self.damaged(format!("the state snapshot {path} does not decode ({e})")))?;
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(self.damaged(format!(
                "the state snapshot {path} has format {}, this build reads format {SNAPSHOT_FORMAT}",
                snapshot.format
            )));
        }
        Ok(Some(snapshot))
    }

    /// Earlier builds saved a snapshot as a folder of files (`state/<epoch>/meta.json`).
    async fn refuse_older_formats(&self) -> Result<()> {
        let prefix = self.path(&["state"]);
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.error(e)),
        };
        for folder in &listing.common_prefixes {
            let mut files = self.store.list(Some(folder));
            while let Some(file) = files.try_next().await.map_err(|e| self.error(e))? {
                if file.location.filename() == Some("meta.json") {
                    return Err(self.damaged(format!(
                        "{} is a state snapshot of an earlier quickchat-etl (format 1), which this build cannot read",
                        file.location
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes snapshots older than the `keep` latest, and offsets and commits older than the
    /// oldest snapshot kept. Returns how many files were removed.
    pub async fn cleanup(&self, keep: usize) -> Result<usize> {
        let snapshots = self.epochs("state", ".snapshot").await?;
        if snapshots.len() <= keep.max(1) {
            return Ok(0);
        }
        let oldest_kept = snapshots[snapshots.len() - keep.max(1)];
        let mut old: Vec<ObjectPath> = snapshots
            .iter()
            .filter(|e| **e < oldest_kept)
            .map(|e| self.path(&["state", &format!("{}.snapshot", epoch_name(*e))]))
            .collect();
        for folder in ["offsets", "commits"] {
            for epoch in self
                .epochs(folder, ".json")
                .await?
                .into_iter()
                .filter(|e| *e < oldest_kept)
            {
                old.push(self.path(&[folder, &format!("{}.json", epoch_name(epoch))]));
            }
        }
        for path in &old {
            match self.store.delete(path).await {
                // Removed by another cleanup meanwhile (the command beside a run).
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(old.len())
    }

    /// Deletes every checkpoint file; returns how many.
    pub async fn remove_all(&self) -> Result<usize> {
        let paths: Vec<ObjectPath> = self
            .store
            .list(Some(&self.root))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        for path in &paths {
            self.store.delete(path).await.map_err(|e| self.error(e))?;
        }
        Ok(paths.len())
    }

    /// Epochs with a snapshot, the latest committed epoch and how many commits are logged, for
    /// `checkpoints` listings.
    pub async fn summary(&self) -> Result<(Vec<u64>, Option<u64>, usize)> {
        let commits = self.epochs("commits", ".json").await?;
        Ok((
            self.epochs("state", ".snapshot").await?,
            commits.last().copied(),
            commits.len(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::stream_pipeline::tests::{rows, source};
    use crate::stream::ingest::EventTimeProgress;
    use crate::stream::state_batches::StateBatches;
    use crate::stream::windowed::WindowedState;

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
                let windows = BTreeMap::from([((60, 0), StateBatches(vec![rows(&source, &[("a", 1), ("b", 2)])]))]);
                let snapshot = Snapshot {
                    format: SNAPSHOT_FORMAT,
                    epoch,
                    positions,
                    sources: BTreeMap::from([(
                        "clicks".into(),
                        IngestState {
                            progress: EventTimeProgress {
                                max_event_times: BTreeMap::from([(0, 99), (2, 120)]),
                                watermark: Some(42),
                            },
                            keys: vec![(u128::MAX - 1, 42), (7, -1)],
                        },
                    )]),
                    outputs: BTreeMap::from([(
                        "q".into(),
                        OperatorState::Windowed(WindowedState {
                            windows,
                            ..Default::default()
                        }),
                    )]),
                    ..Default::default()
                };
                checkpoints.write_snapshot(snapshot).await.unwrap();
            }
        }
        assert_eq!(checkpoints.last_commit().await.unwrap().unwrap().epoch, 5);
        let snapshot = checkpoints.latest_snapshot(5).await.unwrap().unwrap();
        assert_eq!(snapshot.epoch, 4);
        assert_eq!(snapshot.sources["clicks"].keys, vec![(u128::MAX - 1, 42), (7, -1)]);
        let OperatorState::Windowed(state) = &snapshot.outputs["q"] else {
            panic!()
        };
        assert_eq!(state.windows[&(60, 0)].rows(), 2);
        assert_eq!(snapshot.sources["clicks"].progress.max_event_times[&2], 120);
        assert_eq!(snapshot.sources["clicks"].progress.watermark, Some(42));
        assert_eq!(checkpoints.read_offsets(5).await.unwrap().unwrap().records(), 10);

        let removed = checkpoints.cleanup(1).await.unwrap();
        assert_eq!(removed, 7, "snapshot 2, offsets and commits 1 to 3");
        assert_eq!(checkpoints.latest_snapshot(5).await.unwrap().unwrap().epoch, 4);
        assert!(
            checkpoints.read_offsets(5).await.unwrap().is_some(),
            "logs after the kept snapshot stay"
        );
        assert!(checkpoints.read_offsets(3).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_damaged_or_older_snapshot_is_a_state_error_naming_the_way_out() {
        let (dir, lake) = Lake::temporary();
        let checkpoints = Checkpoints::new(&lake, "p", "files").unwrap();
        let state = dir.path().join("_checkpoints/p/files/state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join(format!("{}.snapshot", epoch_name(3))), b"\x07garbage").unwrap();
        let err = checkpoints.latest_snapshot(9).await.unwrap_err();
        assert!(matches!(err, Error::State { .. }), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("checkpoints p --reset"), "{err}");

        std::fs::create_dir_all(state.join(epoch_name(1))).unwrap();
        std::fs::write(state.join(epoch_name(1)).join("meta.json"), b"{}").unwrap();
        let err = checkpoints.latest_snapshot(9).await.unwrap_err().to_string();
        assert!(err.contains("earlier quickchat-etl (format 1)"), "{err}");
    }
}
