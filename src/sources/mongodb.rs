//! MongoDB collection source: the declared fields of a collection's documents, read through a
//! cursor (the server sends them as it advances; never held whole) in chunks of
//! [`CHUNK_DOCUMENTS`], each document as relaxed Extended JSON. The decoder converts a chunk
//! exactly as it converts lines of a `mongoexport` file (`crate::decode::decode_documents`), so
//! a collection and its export give identical batches: one conversion from BSON types to
//! columns, not two that could drift apart.
//!
//! A run for some dates pushes its days to the server as a filter on the source's
//! `date_field` (documents on those UTC days, and those whose field is not a date, so the job's
//! rules see them as they would in the export); a full refresh reads every document.

use chrono::{NaiveDate, NaiveTime};
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::FindOptions;

use crate::config::MongoSettings;
use crate::config::job::Source;
use crate::error::{Error, Result};
use crate::mongo::{Failure, client, collection_origin, failure};
use crate::query::DateRange;

/// Documents decoded together (and asked of the server per cursor batch).
pub const CHUNK_DOCUMENTS: usize = 8192;

/// What to read from a collection.
#[derive(Debug, Clone)]
pub struct CollectionRead {
    /// The server and database.
    pub settings: MongoSettings,
    /// The collection.
    pub collection: String,
    /// The field and days a run asks for, when it asks for some.
    pub days: Option<(String, NaiveDate, NaiveDate)>,
}

impl CollectionRead {
    /// What `def`'s collection gives for a run over `range`.
    pub fn new(settings: &MongoSettings, collection: &str, date_field: Option<&str>, range: DateRange) -> Self {
        let days = match (date_field, range) {
            (Some(field), DateRange::Days { start, end }) => Some((field.to_string(), start, end)),
            _ => None,
        };
        Self {
            settings: settings.clone(),
            collection: collection.to_string(),
            days,
        }
    }

    /// `mongodb:<database>.<collection>`, as its documents are located.
    pub fn origin(&self) -> String {
        collection_origin(&self.settings.database, &self.collection)
    }

    /// Where the documents come from, for logs (password redacted).
    pub fn describe(&self) -> String {
        let days = match &self.days {
            Some((field, start, end)) => format!(" ({field} from {start} to {end}, and not a date)"),
            None => String::new(),
        };
        format!(
            "{} collection {}.{}{days}",
            self.settings.shown(),
            self.settings.database,
            self.collection
        )
    }

    /// The filter the server applies.
    pub fn filter(&self) -> Document {
        let Some((field, start, end)) = &self.days else {
            return Document::new();
        };
        let midnight =
            |day: NaiveDate| DateTime::from_millis(day.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
        let after_end = end.succ_opt().unwrap_or(*end);
        doc! {"$or": [
            {field.as_str(): {"$gte": midnight(*start), "$lt": midnight(after_end)}},
            {field.as_str(): {"$not": {"$type": "date"}}},
        ]}
    }
}

/// A chunk of documents as relaxed Extended JSON, back to back, with their `_id`s.
#[derive(Debug, Default)]
pub struct DocumentChunk {
    /// `mongodb:<database>.<collection>`.
    pub origin: String,
    json: Vec<u8>,
    /// Per document: where its JSON ends in `json`, and its `_id`.
    documents: Vec<(usize, String)>,
}

impl DocumentChunk {
    /// Documents in the chunk.
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether the chunk holds no document.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Document `i`'s Extended JSON.
    pub fn json(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.documents[i - 1].0 };
        &self.json[start..self.documents[i].0]
    }

    /// Document `i`'s `_id`.
    pub fn id(&self, i: usize) -> &str {
        &self.documents[i].1
    }

    fn push(&mut self, document: Document) {
        let id = match document.get("_id") {
            Some(Bson::ObjectId(id)) => id.to_hex(),
            Some(Bson::String(id)) => id.clone(),
            Some(other) => other.clone().into_relaxed_extjson().to_string(),
            None => String::new(),
        };
        let json = Bson::Document(document).into_relaxed_extjson();
        serde_json::to_writer(&mut self.json, &json).expect("writing JSON to memory");
        self.documents.push((self.json.len(), id));
    }
}

/// A collection's documents, a chunk at a time.
pub struct DocumentChunks {
    read: CollectionRead,
    source_name: String,
    cursor: mongodb::Cursor<Document>,
}

impl DocumentChunks {
    /// Asks the server for the declared fields of `source`'s documents.
    pub async fn open(source: &Source, read: CollectionRead) -> Result<Self> {
        let fail = |f: Failure| source_error(&source.name, &read, f);
        let client = client(&read.settings).await.map_err(fail)?;
        let mut projection = Document::new();
        for field in source.schema.fields() {
            projection.insert(field.name().as_str(), 1);
        }
        let options = FindOptions::builder()
            .projection(projection)
            .batch_size(CHUNK_DOCUMENTS as u32)
            .build();
        let cursor = client
            .database(&read.settings.database)
            .collection::<Document>(&read.collection)
            .find(read.filter())
            .with_options(options)
            .await
            .map_err(|e| fail(failure(&read.settings, "reading from", &e)))?;
        Ok(Self {
            source_name: source.name.clone(),
            read,
            cursor,
        })
    }

    /// The next chunk; `None` after the last document.
    pub async fn next(&mut self) -> Result<Option<DocumentChunk>> {
        let mut chunk = DocumentChunk {
            origin: self.read.origin(),
            ..DocumentChunk::default()
        };
        while chunk.len() < CHUNK_DOCUMENTS {
            let document = self.cursor.try_next().await.map_err(|e| {
                source_error(
                    &self.source_name,
                    &self.read,
                    failure(&self.read.settings, "reading from", &e),
                )
            })?;
            match document {
                Some(document) => chunk.push(document),
                None => break,
            }
        }
        Ok((!chunk.is_empty()).then_some(chunk))
    }
}

fn source_error(source_name: &str, read: &CollectionRead, failure: Failure) -> Error {
    Error::Source {
        source_name: source_name.to_string(),
        location: read.origin(),
        message: failure.message,
        retryable: failure.retryable,
        cause: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MongoSettings {
        MongoSettings {
            uri: "mongodb://127.0.0.1:27017/".into(),
            database: "quickchat".into(),
            user: None,
            password: None,
        }
    }

    #[test]
    fn a_run_for_some_days_asks_for_those_days_and_for_documents_without_a_date() {
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let range = DateRange::Days {
            start: day("2024-01-02"),
            end: day("2024-01-03"),
        };
        let read = CollectionRead::new(&settings(), "messages", Some("created_at"), range);
        assert_eq!(
            read.filter().to_string(),
            r#"{ "$or": [{ "created_at": { "$gte": DateTime("2024-01-02 0:00:00.0 +00:00:00"), "$lt": DateTime("2024-01-04 0:00:00.0 +00:00:00") } }, { "created_at": { "$not": { "$type": "date" } } }] }"#
        );
        assert!(read.describe().contains("created_at from 2024-01-02 to 2024-01-03"));
        let everything = CollectionRead::new(&settings(), "messages", Some("created_at"), DateRange::All);
        assert_eq!(everything.filter(), Document::new());
        let undated = CollectionRead::new(&settings(), "messages", None, range);
        assert_eq!(undated.filter(), Document::new());
    }

    #[test]
    fn a_chunk_keeps_each_documents_relaxed_extended_json_and_id() {
        let mut chunk = DocumentChunk::default();
        let id = mongodb::bson::oid::ObjectId::parse_str("65a1f0c2e4b0a1b2c3d4e5f6").unwrap();
        let sent = DateTime::from_millis(1_704_103_200_000);
        chunk.push(doc! {"_id": id, "sender_id": 42_i64, "created_at": sent});
        chunk.push(doc! {"_id": "text-id", "n": 1.5});
        assert_eq!(chunk.len(), 2);
        assert_eq!(chunk.id(0), "65a1f0c2e4b0a1b2c3d4e5f6");
        assert_eq!(
            std::str::from_utf8(chunk.json(0)).unwrap(),
            r#"{"_id":{"$oid":"65a1f0c2e4b0a1b2c3d4e5f6"},"sender_id":42,"created_at":{"$date":"2024-01-01T10:00:00Z"}}"#
        );
        assert_eq!(chunk.id(1), "text-id");
        assert_eq!(
            std::str::from_utf8(chunk.json(1)).unwrap(),
            r#"{"_id":"text-id","n":1.5}"#
        );
    }
}
