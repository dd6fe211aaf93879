//! `generate --load-mongodb`: the generated collections loaded into a MongoDB server, so that
//! the bronze jobs can read the same documents from the server as from the export files.
//!
//! Each export file's lines are parsed from Extended JSON into BSON documents and replace the
//! collection's documents. Two kinds of line cannot be loaded, since a server cannot hold
//! them: a line cut short by an interrupted export (no document), and a document exported twice
//! (a re-export; `_id` is unique in a collection). Both are counted and skipped, so the server
//! holds each document of the export once.

use std::collections::HashSet;

use mongodb::bson::{Bson, Document};

use crate::config::MongoSettings;
use crate::error::{Error, Result};
use crate::mongo::{Failure, client, collection_origin, failure};

/// Documents sent per insert.
const INSERT_BATCH: usize = 10_000;

/// What loading one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The collection.
    pub collection: String,
    /// Documents inserted.
    pub documents: u64,
    /// Lines that are no JSON document (cut short).
    pub not_documents: u64,
    /// Documents whose `_id` came before in the file.
    pub repeated_ids: u64,
}

/// Replaces the documents of `collection` with those of an export file's `contents`.
pub async fn load_collection(settings: &MongoSettings, collection: &str, contents: &[u8]) -> Result<Loaded> {
    let origin = collection_origin(&settings.database, collection);
    let fail = |f: Failure| Error::Sink {
        table: origin.clone(),
        message: f.message,
        retryable: f.retryable,
        cause: None,
    };
    let client = client(settings).await.map_err(fail)?;
    let target = client.database(&settings.database).collection::<Document>(collection);
    target
        .drop()
        .await
        .map_err(|e| fail(failure(settings, "emptying a collection of", &e)))?;

    let mut loaded = Loaded {
        collection: collection.to_string(),
        ..Loaded::default()
    };
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(INSERT_BATCH);
    for line in contents.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
        let Some(document) = parse_document(line) else {
            loaded.not_documents += 1;
            continue;
        };
        if let Some(id) = document.get("_id")
            && !seen.insert(id.clone().into_relaxed_extjson().to_string())
        {
            loaded.repeated_ids += 1;
            continue;
        }
        batch.push(document);
        if batch.len() == INSERT_BATCH {
            loaded.documents += insert(&target, settings, std::mem::take(&mut batch))
                .await
                .map_err(fail)?;
        }
    }
    if !batch.is_empty() {
        loaded.documents += insert(&target, settings, batch).await.map_err(fail)?;
    }
    Ok(loaded)
}

async fn insert(
    target: &mongodb::Collection<Document>,
    settings: &MongoSettings,
    batch: Vec<Document>,
) -> std::result::Result<u64, Failure> {
    let count = batch.len() as u64;
    target
        .insert_many(batch)
        .await
        .map_err(|e| failure(settings, "loading documents into", &e))?;
    Ok(count)
}

/// One Extended JSON line as a document; `None` when it is none.
fn parse_document(line: &[u8]) -> Option<Document> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    match Bson::try_from(value).ok()? {
        Bson::Document(document) => Some(document),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_json_lines_become_typed_documents_and_a_cut_line_none() {
        let line = br#"{"_id":{"$oid":"65a1f0c2e4b0a1b2c3d4e5f6"},"sender_id":{"$numberLong":"42"},"created_at":{"$date":"2024-01-01T10:00:00Z"},"n":7}"#;
        let document = parse_document(line).unwrap();
        assert!(matches!(document.get("_id"), Some(Bson::ObjectId(_))));
        assert_eq!(document.get("sender_id"), Some(&Bson::Int64(42)));
        assert!(matches!(document.get("created_at"), Some(Bson::DateTime(_))));
        assert_eq!(document.get("n"), Some(&Bson::Int32(7)));
        assert_eq!(parse_document(&line[..line.len() / 2]), None);
        assert_eq!(parse_document(b"[1, 2]"), None);
    }
}
