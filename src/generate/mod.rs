//! The sample-data generator: a realistic QuickChat data set (users, conversations, messages,
//! calls) from a seed, written as the files the Spark jobs' sources produced — `mongoexport`
//! JSON lines and a CSV export of the MySQL `users` table — and optionally loaded into MySQL.
//!
//! The same seed always gives byte-identical files. The data is deliberately a little dirty,
//! as real exports are: re-exported duplicate documents, truncated lines, a wrong type, a
//! missing timestamp, clock skew, messages from deleted accounts, untidy e-mail addresses.

pub mod mongo_json;
pub mod mongo_load;
pub mod mysql;
pub mod quickchat;
pub mod streams;
pub mod users;

use std::fmt;

use chrono::NaiveDate;
use object_store::{ObjectStoreExt, PutPayload};
use rand::Rng;
use url::Url;

use crate::catalog::Lake;
use crate::cli::DataSetArgs;
use crate::error::{Error, Result};

/// The shape of a generated data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSetSpec {
    /// Random seed.
    pub seed: u64,
    /// Users.
    pub users: u32,
    /// Days of activity.
    pub days: u32,
    /// The first day.
    pub start_date: NaiveDate,
}

impl DataSetArgs {
    /// The spec these flags describe.
    pub fn to_spec(&self) -> DataSetSpec {
        DataSetSpec {
            seed: self.seed,
            users: self.users,
            days: self.days,
            start_date: self.start_date,
        }
    }
}

/// The files of a data set, by path relative to the output folder.
pub struct DataSetFiles {
    /// `(relative path, contents)`.
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// What was generated.
    pub counts: Counts,
    /// The users, for loading into MySQL.
    pub users: Vec<users::User>,
}

/// How many records of each kind were generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Users.
    pub users: usize,
    /// Conversations.
    pub conversations: usize,
    /// Message documents (including duplicates and bad lines).
    pub messages: usize,
    /// Call documents.
    pub calls: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, {} conversations, {} messages, {} calls",
            self.users, self.conversations, self.messages, self.calls
        )
    }
}

/// Generates the data set in memory.
pub fn generate(spec: &DataSetSpec) -> DataSetFiles {
    quickchat::generate(spec)
}

/// Writes the data set under a folder URL (local or S3) reached through the lake's stores.
pub async fn write_to_url(lake: &Lake, folder: &Url, spec: &DataSetSpec) -> Result<Counts> {
    write_data(lake, folder, generate(spec)).await
}

/// Writes generated files under a folder URL (local or S3) reached through the lake's stores.
pub async fn write_data(lake: &Lake, folder: &Url, data: DataSetFiles) -> Result<Counts> {
    for (relative, contents) in data.files {
        write_file(lake, folder, relative, contents).await?;
    }
    Ok(data.counts)
}

/// Writes one file under a folder (local or S3).
pub async fn write_file(lake: &Lake, folder: &Url, relative: &str, contents: Vec<u8>) -> Result<()> {
    let url = folder
        .join(relative)
        .map_err(|e| Error::Internal(format!("{folder} + {relative}: {e}")))?;
    let (store, path) = lake.object_store(&url)?;
    store
        .put(&path, PutPayload::from(contents))
        .await
        .map_err(|e| Error::Sink {
            table: url.to_string(),
            message: e.to_string(),
            retryable: true,
            cause: None,
        })?;
    Ok(())
}

/// One of `items`, at random.
pub(crate) fn pick<'a, T>(rng: &mut rand_chacha::ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}
