//! [`OpenTables`]: the Delta snapshots a long-running writer keeps between commits.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake::DeltaTable;

use crate::catalog::TableName;

/// The tables a long-running writer (a streaming pipeline's sinks) keeps open between commits.
///
/// Opening a table lists its `_delta_log` and replays the commits since the last checkpoint; on
/// a local folder the listing reads every entry of the log, so a stream committing every second
/// paid more for each commit the older its table was. A kept table starts each write from the
/// snapshot its previous commit left, after one read checking that nobody committed since (a
/// `maintain` run, another writer): if somebody did, the snapshot is brought up to date first,
/// so a merge never rewrites files another commit already replaced.
///
/// A write that fails drops its table: the next one opens it afresh.
#[derive(Debug, Default)]
pub struct OpenTables(Mutex<HashMap<String, DeltaTable>>);

impl OpenTables {
    pub(super) fn take(&self, table: &TableName) -> Option<DeltaTable> {
        self.0.lock().expect("open tables lock").remove(&table.to_string())
    }

    pub(super) fn keep(&self, table: &TableName, opened: DeltaTable) {
        self.0
            .lock()
            .expect("open tables lock")
            .insert(table.to_string(), opened);
    }
}
