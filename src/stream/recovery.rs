//! Recovery: a run resumes from its checkpoint. It loads the latest state snapshot (or starts
//! afresh), then processes the epochs logged after it again, from exactly the same records: the
//! sinks recognise what they already hold, so every event counts once however the previous run
//! ended. The whole state is saved now and then as one [`Snapshot`] holding every operator's
//! state struct.

use std::time::Instant;

use chrono::Utc;

use super::checkpoint::{SNAPSHOT_FORMAT, Snapshot};
use super::engine::{Engine, SinkSettings};
use crate::error::{Error, Result};
use crate::sinks::epoch::SinkWriter;

impl Engine<'_> {
    /// Loads the latest snapshot (or starts afresh) and processes the logged epochs after it.
    pub(super) async fn restore(&mut self, settings: SinkSettings) -> Result<()> {
        let last_commit = self.checkpoints.last_commit().await?;
        let committed = last_commit.as_ref().map_or(0, |c| c.epoch);
        let last_logged = self.checkpoints.last_logged_epoch().await?.unwrap_or(0);
        let snapshot = match self.checkpoints.latest_snapshot(committed).await? {
            Some(snapshot) => snapshot,
            None if last_logged > 0 => {
                return Err(self.checkpoints.damaged(format!(
                    "epochs up to {last_logged} are logged but no state snapshot is left to resume from"
                )));
            }
            None => {
                let snapshot = Snapshot {
                    format: SNAPSHOT_FORMAT,
                    epoch: 0,
                    lineage: new_lineage(),
                    positions: self.input.start_positions().await?,
                    generator_start_ms: self.input.generator_start_ms(),
                    ..Default::default()
                };
                self.checkpoints.write_snapshot(snapshot.clone()).await?;
                snapshot
            }
        };
        let (lineage, generator_start_ms, snapshot_epoch) =
            (snapshot.lineage.clone(), snapshot.generator_start_ms, snapshot.epoch);
        self.apply(snapshot)?;
        self.sinks = SinkWriter::new(self.lake, self.pipeline, self.input.kind(), &lineage, settings);
        self.input.resume(generator_start_ms, &self.positions);
        if snapshot_epoch > 0 || last_logged > 0 {
            tracing::info!(pipeline = %self.pipeline.name, checkpoint = %self.checkpoints.location(),
                snapshot = snapshot_epoch, committed, logged = last_logged, "resuming from checkpoint");
        }
        for epoch in snapshot_epoch + 1..=last_logged {
            let range = self.checkpoints.read_offsets(epoch).await?.ok_or_else(|| {
                self.checkpoints
                    .damaged(format!("the offsets of epoch {epoch} are missing"))
            })?;
            let batch = self.input.replay(&range).await?;
            self.report.replayed += 1;
            self.process(range, batch, epoch <= committed).await?;
        }
        Ok(())
    }

    /// Takes every operator's state from a snapshot.
    fn apply(&mut self, mut snapshot: Snapshot) -> Result<()> {
        self.lineage = snapshot.lineage;
        self.epoch = snapshot.epoch;
        self.positions = snapshot.positions;
        self.last_snapshot = (Instant::now(), snapshot.epoch);
        for (name, state) in &mut self.sources {
            state.restore(snapshot.sources.remove(name).unwrap_or_default());
        }
        for (name, buffer) in &mut self.join_buffers {
            buffer.restore(snapshot.join_buffers.remove(name).unwrap_or_default());
        }
        let epoch = snapshot.epoch;
        for query in &mut self.queries {
            let Some(state) = snapshot.outputs.remove(&query.output.name) else {
                continue;
            };
            let sql_path = query.output.sql_path.clone();
            query.restore(state, |message| {
                self.checkpoints
                    .damaged(format!("{message} (snapshot {epoch}; the query is in {sql_path})"))
            })?;
        }
        self.alerts.restore(snapshot.alerts);
        Ok(())
    }

    /// Every operator's state now.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            epoch: self.epoch,
            lineage: self.lineage.clone(),
            positions: self.positions.clone(),
            generator_start_ms: self.input.generator_start_ms(),
            sources: self
                .sources
                .iter()
                .map(|(name, state)| (name.clone(), state.state()))
                .collect(),
            join_buffers: self
                .join_buffers
                .iter()
                .map(|(name, buffer)| (name.clone(), buffer.state()))
                .collect(),
            outputs: self
                .queries
                .iter()
                .map(|q| (q.output.name.clone(), q.state()))
                .collect(),
            alerts: self.alerts.state(),
        }
    }

    /// Saves the state unless the last snapshot is of this epoch, beside the stream: the state is
    /// taken now (its Arrow batches shared, not copied), then encoded and written by a task of
    /// its own while the next micro-batches run. One snapshot is written at a time (the next
    /// waits for the one before) and the end of a run waits for the last. A crash before a
    /// snapshot is written only means a restart replays from the one before it.
    pub(super) async fn save_snapshot(&mut self) -> Result<()> {
        if self.last_snapshot.1 == self.epoch {
            return Ok(());
        }
        self.snapshot_written().await?;
        let (checkpoints, snapshot) = (self.checkpoints.clone(), self.snapshot());
        let (pipeline, keep) = (self.pipeline.name.clone(), self.pipeline.keep_snapshots);
        self.snapshot_writing = Some(tokio::spawn(async move {
            checkpoints.write_snapshot(snapshot).await?;
            // The older snapshots, and the logs only they needed, go now: a run of weeks keeps a
            // checkpoint of a few snapshots. A failed removal is tried again after the next one.
            if let Err(e) = checkpoints.cleanup(keep).await {
                tracing::warn!(pipeline = %pipeline, checkpoint = %checkpoints.location(), error = %e,
                    "removing older snapshots failed; tried again after the next snapshot");
            }
            Ok(())
        }));
        self.last_snapshot = (Instant::now(), self.epoch);
        Ok(())
    }

    /// Waits for the snapshot being written beside the stream, if one is, and passes on its error.
    pub(super) async fn snapshot_written(&mut self) -> Result<()> {
        match self.snapshot_writing.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::Internal(format!("the task writing a state snapshot failed: {e}")))?,
            None => Ok(()),
        }
    }
}

/// A new checkpoint lineage id: the time it began and a random suffix.
fn new_lineage() -> String {
    format!("{}-{:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u16>())
}
