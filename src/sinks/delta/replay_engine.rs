//! [`BoundedReplayStore`]: the log store deltalake opens every table through, the same as the
//! one it would have chosen (local, S3) but for the kernel engine it replays logs with, which
//! reads a few log files at a time in small batches.
//!
//! deltalake 1.1 builds its kernel engine with the kernel's defaults: up to 1,000 log files read
//! at once, each through a JSON decoder that allocates room for 1,000 rows of the whole action
//! schema up front (~3 MB, whatever the file holds). Every snapshot load and update replays the
//! commits since the last checkpoint (up to 100), so a streaming table's commit allocated
//! hundreds of MB for a few hundred KB of JSON: heaptrack on `bench --only commits` put 298 MB
//! of a 309 MB peak heap in those decoders (`TapeDecoder::new` under `DefaultJsonHandler`). The
//! live heap stayed small, but resident memory followed the high-water mark of these replays.
//! [`FILES_AT_ONCE`] × [`ROWS_PER_BATCH`] bounds them; the figures are in the README's
//! "Lake upkeep".

use std::sync::{Arc, Once};

use bytes::Bytes;
use datafusion::datasource::object_store::ObjectStoreUrl;
use delta_kernel::Engine;
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::{TokioBackgroundExecutor, TokioMultiThreadExecutor};
use deltalake::DeltaResult;
use deltalake::kernel::Version;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{
    CommitOrBytes, LogStore, LogStoreConfig, LogStoreFactory, ObjectStoreRef, StorageConfig, logstore_factories,
};
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::runtime::{Handle, RuntimeFlavor};
use url::Url;
use uuid::Uuid;

/// Log files a replay reads at once: deltalake's log checkpoint interval (100 commits), so a
/// replay reads every commit since the last checkpoint at once, as with the kernel's default.
pub const FILES_AT_ONCE: std::num::NonZero<usize> = std::num::NonZero::new(100).expect("not zero");

/// Rows (actions) per batch a replay decodes, what each file's decoder allocates room for up
/// front: a streaming commit holds a few dozen actions, so most files are still one batch.
pub const ROWS_PER_BATCH: std::num::NonZero<usize> = std::num::NonZero::new(128).expect("not zero");

/// Wraps the log store factories deltalake registered for local and S3 tables; once per
/// process. A scheme nothing registered is left alone.
pub fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let factories = logstore_factories();
        for scheme in ["file://", "s3://", "s3a://"] {
            let url = Url::parse(scheme).expect("a URL");
            let registered = factories.get(&url).map(|factory| Arc::clone(factory.value()));
            if let Some(inner) = registered {
                factories.insert(url, Arc::new(BoundedReplayFactory { inner }));
            }
        }
    });
}

struct BoundedReplayFactory {
    inner: Arc<dyn LogStoreFactory>,
}

impl LogStoreFactory for BoundedReplayFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        let inner = self.inner.with_options(prefixed_store, root_store, location, options)?;
        Ok(Arc::new(BoundedReplayStore { inner }))
    }
}

/// The log store deltalake would have used, with a bounded replay [`LogStore::engine`];
/// everything else is the inner store's.
pub struct BoundedReplayStore {
    inner: Arc<dyn LogStore>,
}

#[async_trait::async_trait]
impl LogStore for BoundedReplayStore {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn refresh(&self) -> DeltaResult<()> {
        self.inner.refresh().await
    }

    async fn read_commit_entry(&self, version: Version) -> DeltaResult<Option<Bytes>> {
        self.inner.read_commit_entry(version).await
    }

    async fn write_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .write_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn abort_commit_entry(
        &self,
        version: Version,
        commit_or_bytes: CommitOrBytes,
        operation_id: Uuid,
    ) -> Result<(), TransactionError> {
        self.inner
            .abort_commit_entry(version, commit_or_bytes, operation_id)
            .await
    }

    async fn get_latest_version(&self, start_version: Version) -> DeltaResult<Version> {
        self.inner.get_latest_version(start_version).await
    }

    fn object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.object_store(operation_id)
    }

    fn root_object_store(&self, operation_id: Option<Uuid>) -> Arc<dyn ObjectStore> {
        self.inner.root_object_store(operation_id)
    }

    fn engine(&self, operation_id: Option<Uuid>) -> Arc<dyn Engine> {
        let builder = DefaultEngineBuilder::new(self.inner.root_object_store(operation_id))
            .with_buffer_size(FILES_AT_ONCE)
            .with_batch_size(ROWS_PER_BATCH);
        let handle = Handle::current();
        match handle.runtime_flavor() {
            // As deltalake does: a current-thread runtime cannot block on its own tasks.
            RuntimeFlavor::CurrentThread => Arc::new(
                builder
                    .with_task_executor(Arc::new(TokioBackgroundExecutor::new()))
                    .build(),
            ),
            _ => Arc::new(
                builder
                    .with_task_executor(Arc::new(TokioMultiThreadExecutor::new(handle)))
                    .build(),
            ),
        }
    }

    fn to_uri(&self, location: &Path) -> String {
        self.inner.to_uri(location)
    }

    fn root_url(&self) -> &Url {
        self.inner.root_url()
    }

    fn log_path(&self) -> &Path {
        self.inner.log_path()
    }

    fn transaction_url(&self, operation_id: Option<Uuid>) -> DeltaResult<Url> {
        self.inner.transaction_url(operation_id)
    }

    async fn is_delta_table_location(&self) -> DeltaResult<bool> {
        self.inner.is_delta_table_location().await
    }

    fn config(&self) -> &LogStoreConfig {
        self.inner.config()
    }

    fn object_store_url(&self) -> ObjectStoreUrl {
        self.inner.object_store_url()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::catalog::{Lake, TableName, open};
    use crate::query::new_session;
    use crate::sinks::delta::DeltaSink;

    #[tokio::test]
    async fn a_table_opens_through_the_bounded_replay_and_reads_every_commit() {
        let (_dir, lake) = Lake::temporary();
        let table = TableName::parse("bronze.replayed").unwrap();
        let ctx = new_session();
        // Commits with no log checkpoint among them (deltalake writes one every 100): opening the
        // table replays each of their files through the bounded engine.
        let commits = 12;
        for id in 0..commits {
            let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
            let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap();
            DeltaSink::new(&lake, table.clone())
                .write_batches(&ctx, batch.schema(), vec![batch])
                .await
                .unwrap();
        }
        let opened = open(&lake, &table).await.unwrap().expect("the table");
        let store = opened.log_store();
        assert!(
            store.as_ref().any_ref().downcast_ref::<BoundedReplayStore>().is_some(),
            "{}",
            store.name()
        );
        assert_eq!(opened.version(), Some(commits as u64 - 1));
        let files = opened.snapshot().unwrap().log_data().num_files();
        assert_eq!(files as i64, commits, "one file per commit, none lost in the replay");
    }
}
