//! The Elasticsearch sink of streaming outputs (OpenSearch 2 and Elasticsearch 7/8 speak the
//! same `_bulk` API): each row becomes a JSON document indexed under an id made of the sink's
//! key columns, in NDJSON `_bulk` requests bounded in documents and bytes.
//!
//! Exactly once: a document written again under the same id replaces the earlier one, so the
//! replay of an epoch after a crash overwrites what it wrote before and adds nothing.
//!
//! Failures: a request the server cannot take now (unreachable, HTTP 429, 5xx) and documents
//! it refused for the same reasons are sent again with the process's retry policy; a document
//! refused for what it is (a mapping conflict, a value out of range) is returned as a [`Reject`]
//! with the server's reason, for `meta.quarantine`: never dropped in silence.

use std::ops::Range;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type};
use chrono::NaiveDate;
use reqwest::StatusCode;
use url::Url;

use super::SinkMetrics;
use super::rows::{Nulls, document_ids, rows_as_json};
use crate::config::ElasticsearchSettings;
use crate::config::pipeline::ElasticsearchSinkDef;
use crate::decode::reject::{Location, Reject};
use crate::error::{Error, Result};
use crate::retry::{Retries, operation};

/// A client of one Elasticsearch server.
pub struct ElasticsearchSink {
    client: reqwest::Client,
    /// The server's URL without credentials.
    base: Url,
    credentials: Option<(String, Option<String>)>,
    /// The server as shown in messages.
    shown: String,
}

/// What indexing an epoch's rows did.
#[derive(Debug, Default)]
pub struct Indexed {
    /// Documents indexed.
    pub metrics: SinkMetrics,
    /// Documents the server refused for good, with its reasons.
    pub refused: Vec<Reject>,
}

/// One document of a bulk request.
struct Document {
    index: String,
    id: String,
    source: String,
}

impl ElasticsearchSink {
    /// Checks that the server answers (and takes the credentials) and returns a client of it.
    pub async fn connect(settings: &ElasticsearchSettings) -> Result<Self> {
        let shown = settings.shown();
        let mut base =
            Url::parse(&settings.url).map_err(|e| sink_error(&shown, format!("bad Elasticsearch URL: {e}"), false))?;
        let credentials = match (base.username(), &settings.user) {
            ("", None) => None,
            ("", Some(user)) => Some((user.clone(), settings.password.clone())),
            (user, _) => Some((
                percent_decoded(user),
                base.password().map(percent_decoded).or(settings.password.clone()),
            )),
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &settings.ssl_ca {
            let pem = std::fs::read(ca).map_err(|e| {
                sink_error(
                    &shown,
                    format!("cannot read ELASTICSEARCH_SSL_CA {}: {e}", ca.display()),
                    false,
                )
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                sink_error(
                    &shown,
                    format!("ELASTICSEARCH_SSL_CA {} holds no PEM certificate: {e}", ca.display()),
                    false,
                )
            })?;
            client = client.tls_certs_merge(certificates);
        }
        let client = client
            .build()
            .map_err(|e| sink_error(&shown, format!("cannot build an HTTP client: {e}"), false))?;
        let sink = Self {
            client,
            base,
            credentials,
            shown,
        };
        let answer = sink.send(sink.client.get(sink.base.clone())).await?;
        let version = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["version"]["number"].as_str().map(str::to_string))
            .unwrap_or_else(|| "of unknown version".into());
        tracing::info!(server = %sink.shown, version, "Elasticsearch server answered");
        Ok(sink)
    }

    /// Deletes an index and its documents (the benchmark's own, when it ends).
    pub async fn delete_index(&self, index: &str) -> Result<()> {
        self.send(self.client.delete(self.index_url(index, "")?))
            .await
            .map(|_| ())
    }

    /// How many documents `index` holds, once what was indexed before is searchable (the
    /// benchmark's check that nothing was lost or doubled).
    pub async fn document_count(&self, index: &str) -> Result<u64> {
        self.send(self.client.post(self.index_url(index, "/_refresh")?)).await?;
        let answer = self.send(self.client.get(self.index_url(index, "/_count")?)).await?;
        serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["count"].as_u64())
            .ok_or_else(|| sink_error(&self.shown, format!("{index}/_count gave no count"), true))
    }

    /// The server's URL of `index` followed by `path` (empty, or `/_count` and the like).
    fn index_url(&self, index: &str, path: &str) -> Result<Url> {
        self.base
            .join(&format!("{index}{path}"))
            .map_err(|e| sink_error(&self.shown, format!("bad index name {index}: {e}"), false))
    }

    /// Indexes `rows` of `output`'s epoch `epoch` per `def`.
    pub async fn index_rows(
        &self,
        def: &ElasticsearchSinkDef,
        output: &str,
        epoch: u64,
        rows: &[RecordBatch],
    ) -> Result<Indexed> {
        let started = std::time::Instant::now();
        let mut pending = documents(def, output, epoch, rows).map_err(|e| sink_error(&self.shown, e, false))?;
        let mut indexed = Indexed::default();
        let mut retries = Retries::new(operation::SINK_WRITE, crate::retry::policy());
        loop {
            let mut again = vec![false; pending.len()];
            let mut last_failure = None;
            for chunk in bulk_chunks(&pending, def.bulk_max_docs, def.bulk_max_bytes) {
                let outcome = match self.bulk(&pending[chunk.clone()]).await {
                    Ok(outcome) => outcome,
                    // The whole request failed in a way that may pass: all of it again.
                    Err(e) if e.is_retryable() => {
                        again[chunk].fill(true);
                        last_failure = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for (at, item) in chunk.zip(outcome) {
                    let document = &pending[at];
                    match item {
                        Item::Indexed => indexed.metrics.rows += 1,
                        Item::Busy(reason) => {
                            again[at] = true;
                            last_failure = Some(sink_error(&self.shown, reason, true));
                        }
                        Item::Refused(reason) => indexed.refused.push(Reject::new(
                            output,
                            Location::Document {
                                collection: format!("elasticsearch:{}", document.index),
                                id: document.id.clone(),
                            },
                            format!("Elasticsearch refused the document: {reason}"),
                            document.source.as_bytes(),
                        )),
                    }
                }
            }
            let Some(failure) = last_failure else { break };
            let count = again.iter().filter(|a| **a).count();
            let what = format!("indexing {count} documents of {output} into {}", self.shown);
            if let Some(given_up) = retries.wait_after(&what, failure).await {
                return Err(given_up);
            }
            pending = pending
                .into_iter()
                .zip(again)
                .filter_map(|(d, again)| again.then_some(d))
                .collect();
        }
        indexed.metrics.elapsed = started.elapsed();
        Ok(indexed)
    }

    /// Sends one `_bulk` request; the outcome of each document, in order.
    async fn bulk(&self, documents: &[Document]) -> Result<Vec<Item>> {
        let mut body = String::new();
        for document in documents {
            let action = serde_json::json!({"index": {"_index": document.index, "_id": document.id}});
            body.push_str(&action.to_string());
            body.push('\n');
            body.push_str(&document.source);
            body.push('\n');
        }
        let url = self.base.join("_bulk").expect("a relative path");
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body);
        let answer = self.send(request).await?;
        bulk_items(&answer, documents.len()).map_err(|message| sink_error(&self.shown, message, true))
    }

    /// Sends `request` with the credentials; the body of a successful answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<bytes::Bytes> {
        let request = match &self.credentials {
            Some((user, password)) => request.basic_auth(user, password.as_ref()),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            // reqwest's own message is "error sending request"; the causes say why.
            let mut said = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(inner) = cause {
                said = format!("{said}: {inner}");
                cause = inner.source();
            }
            let check = if said.contains("certificate") {
                "does ELASTICSEARCH_SSL_CA name the CA file that signed the server's certificate?"
            } else {
                "is Elasticsearch running and ELASTICSEARCH_URL right? \
                 `docker compose -f docker/compose.yml up -d elasticsearch` starts one"
            };
            sink_error(&self.shown, format!("cannot reach the server: {said} ({check})"), true)
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| sink_error(&self.shown, format!("reading the answer: {e}"), true))?;
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => sink_error(
                &self.shown,
                format!(
                    "the server refused the credentials (HTTP {status}): check ELASTICSEARCH_USER and \
                     ELASTICSEARCH_PASSWORD (or the user in ELASTICSEARCH_URL)"
                ),
                false,
            ),
            StatusCode::PAYLOAD_TOO_LARGE => sink_error(
                &self.shown,
                format!(
                    "the server refused a bulk request as too large (HTTP 413): lower the sink's bulk_max_bytes; {text}"
                ),
                false,
            ),
            StatusCode::TOO_MANY_REQUESTS => sink_error(&self.shown, format!("busy (HTTP 429): {text}"), true),
            status if status.is_server_error() => {
                sink_error(&self.shown, format!("server error (HTTP {status}): {text}"), true)
            }
            status => sink_error(&self.shown, format!("HTTP {status}: {text}"), false),
        })
    }
}

/// What the server did with one document of a bulk request.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Indexed,
    /// Refused for now (429, 5xx): to be sent again.
    Busy(String),
    /// Refused for good, with the reason.
    Refused(String),
}

/// The outcome of each of `expected` documents from a `_bulk` answer.
fn bulk_items(answer: &[u8], expected: usize) -> std::result::Result<Vec<Item>, String> {
    let unreadable = || {
        format!(
            "the _bulk answer is not what Elasticsearch sends: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        )
    };
    let answer: serde_json::Value = serde_json::from_slice(answer).map_err(|_| unreadable())?;
    let items = answer["items"].as_array().ok_or_else(unreadable)?;
    if items.len() != expected {
        return Err(format!(
            "the _bulk answer has {} items for {expected} documents",
            items.len()
        ));
    }
    Ok(items
        .iter()
        .map(|item| {
            let result = item.as_object().and_then(|o| o.values().next()).unwrap_or(item);
            let status = result["status"].as_u64().unwrap_or(0);
            let reason = || {
                let error = &result["error"];
                match (error["type"].as_str(), error["reason"].as_str()) {
                    (Some(kind), Some(reason)) => format!("{kind}: {reason} (HTTP {status})"),
                    _ => format!("{error} (HTTP {status})"),
                }
            };
            match status {
                200..=299 => Item::Indexed,
                429 | 500..=599 => Item::Busy(reason()),
                _ => Item::Refused(reason()),
            }
        })
        .collect())
}

/// The documents of an epoch's rows: index, id and JSON source of each.
fn documents(
    def: &ElasticsearchSinkDef,
    output: &str,
    epoch: u64,
    rows: &[RecordBatch],
) -> std::result::Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    for batch in rows {
        let sources = rows_as_json(batch, Nulls::Explicit).map_err(|e| format!("rows as JSON: {e}"))?;
        let ids = document_ids(batch, &def.key, output, epoch, documents.len()).map_err(|e| e.to_string())?;
        let indices = match &def.index_by_day {
            None => vec![def.index.clone(); batch.num_rows()],
            Some(column) => daily_indices(batch, column, &def.index)?,
        };
        for ((source, id), index) in sources.into_iter().zip(ids).zip(indices) {
            documents.push(Document { index, id, source });
        }
    }
    Ok(documents)
}

/// Each row's index `<index>-YYYY.MM.DD` by the UTC day of its `column` (`<index>` without one).
fn daily_indices(batch: &RecordBatch, column: &str, index: &str) -> std::result::Result<Vec<String>, String> {
    let values = batch
        .column_by_name(column)
        .ok_or_else(|| format!("index_by_day column `{column}` is not in the output"))?;
    if !matches!(
        values.data_type(),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    ) {
        return Err(format!(
            "index_by_day column `{column}` is {}, not a timestamp or date",
            values.data_type()
        ));
    }
    let days = arrow::compute::cast(values, &DataType::Date32).map_err(|e| e.to_string())?;
    let days = days.as_primitive::<Date32Type>();
    Ok((0..days.len())
        .map(|row| match days.is_valid(row) {
            true => {
                let day = NaiveDate::from_num_days_from_ce_opt(days.value(row) + 719_163).unwrap_or_default();
                format!("{index}-{}", day.format("%Y.%m.%d"))
            }
            false => index.to_string(),
        })
        .collect())
}

/// `documents` in runs of at most `max_docs` documents and `max_bytes` bytes of source (a
/// larger document goes alone), as ranges of places.
fn bulk_chunks(documents: &[Document], max_docs: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, document) in documents.iter().enumerate() {
        let size = document.source.len() + document.id.len() + document.index.len() + 40;
        if i > start && (i - start >= max_docs || bytes + size > max_bytes) {
            chunks.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < documents.len() {
        chunks.push(start..documents.len());
    }
    chunks
}

/// A URL's user or password, percent-decoded (a `+` in it is a plus, not a space).
fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

fn sink_error(shown: &str, message: String, retryable: bool) -> Error {
    Error::Sink {
        table: format!("elasticsearch {shown}"),
        message,
        retryable,
        cause: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(source: &str) -> Document {
        Document {
            index: "i".into(),
            id: "1".into(),
            source: source.into(),
        }
    }

    #[test]
    fn bulk_requests_are_bounded_in_documents_and_bytes() {
        let docs: Vec<Document> = (0..5).map(|_| document(&"x".repeat(100))).collect();
        let sizes = |chunks: Vec<Range<usize>>| chunks.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(sizes(bulk_chunks(&docs, 2, 1 << 20)), [2, 2, 1]);
        assert_eq!(sizes(bulk_chunks(&docs, 100, 300)), [2, 2, 1]);
        // A document larger than the byte bound goes alone.
        assert_eq!(sizes(bulk_chunks(&docs, 100, 10)), [1, 1, 1, 1, 1]);
        assert!(bulk_chunks(&[], 10, 10).is_empty());
    }

    #[test]
    fn bulk_answers_tell_indexed_busy_and_refused_documents_apart() {
        let answer = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"a","_id":"1","status":201}},
            {"index":{"_index":"a","_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_index":"a","_id":"3","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}}]}"#;
        let items = bulk_items(answer, 3).unwrap();
        assert_eq!(items[0], Item::Indexed);
        assert!(matches!(&items[1], Item::Busy(r) if r.contains("queue full")));
        assert_eq!(
            items[2],
            Item::Refused("mapper_parsing_exception: failed to parse field [n] (HTTP 400)".into())
        );
        assert!(
            bulk_items(b"<html>proxy error</html>", 1)
                .unwrap_err()
                .contains("proxy error")
        );
        assert!(bulk_items(br#"{"items":[]}"#, 1).unwrap_err().contains("0 items for 1"));
    }
}
