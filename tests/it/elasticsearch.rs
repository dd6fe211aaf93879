//! Against the Elasticsearch-API server `scripts/test.sh` starts (OpenSearch): the interaction
//! pipeline indexes its per-user and per-item totals and its alerts; after a run killed in the
//! middle of its sinks and resumed, every index holds exactly the Delta table's rows, each alert
//! once, and a document the server refuses (a value out of its mapping's range) is in
//! `meta.quarantine` with the server's reason instead of lost.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::stream_support::StreamProject;
use crate::support::{TestLake, describe, required_env, unique_name};

const PIPELINE: &str = "interaction-analytics";
const INDICES: [&str; 3] = ["agg_interactions_user", "agg_interactions_item", "alerts"];
/// The user index maps `total_click` as a `byte`: a user past 127 clicks is refused. The
/// generator's 120,000 events over its 200 users give each ~120 clicks, so some users pass it.
const BYTE_MAX: i64 = 127;

struct Search {
    url: String,
    client: reqwest::Client,
}

impl Search {
    fn new() -> Self {
        Self {
            url: required_env("QUICKCHAT_TEST_ELASTICSEARCH_URL"),
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}/{path}", self.url));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Every document of `index` by id.
    async fn documents(&self, index: &str) -> BTreeMap<String, Value> {
        self.call(reqwest::Method::POST, &format!("{index}/_refresh"), None)
            .await;
        let found = self
            .call(
                reqwest::Method::POST,
                &format!("{index}/_search"),
                Some(json!({"size": 10000, "query": {"match_all": {}}})),
            )
            .await;
        found["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| (hit["_id"].as_str().unwrap().to_string(), hit["_source"].clone()))
            .collect()
    }
}

/// The rows of `sql` (first column the id, then values), as in the lake.
async fn lake_rows(lake: &TestLake, sql: &str) -> BTreeMap<String, Vec<String>> {
    lake.query(sql)
        .await
        .lines()
        .skip(1)
        .map(|line| {
            let mut values = line.split('|').map(str::to_string);
            (values.next().unwrap(), values.collect())
        })
        .collect()
}

fn field(document: &Value, name: &str) -> String {
    match &document[name] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Renames the pipeline's indices `<index>-<suffix>` with a suffix unique to the test, so that
/// tests sharing the server never see each other's documents; returns the suffix.
fn with_suffixed_indices(project: &StreamProject, prefix: &str) -> String {
    let suffix = unique_name(prefix).replace('_', "-");
    let file = project.path().join(format!("pipelines/{PIPELINE}.toml"));
    let mut text = std::fs::read_to_string(&file).unwrap();
    for index in INDICES {
        text = text.replace(
            &format!("index = \"{index}\""),
            &format!("index = \"{index}-{suffix}\""),
        );
    }
    std::fs::write(&file, text).unwrap();
    suffix
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_totals_and_alerts_are_indexed_once_and_refused_documents_are_quarantined() {
    let search = Search::new();
    let project = StreamProject::new(10_000).await;
    let suffix = with_suffixed_indices(&project, "es");
    let index = |base: &str| format!("{base}-{suffix}");
    search
        .call(
            reqwest::Method::PUT,
            &index("agg_interactions_user"),
            Some(json!({"mappings": {"properties": {"total_click": {"type": "byte"}}}})),
        )
        .await;
    project.create_topics(&project.pipeline(PIPELINE)).await;
    let lake = TestLake::local();
    let run = |fault: Option<&str>| {
        let mut command = project.command(
            &lake,
            &[
                "run",
                PIPELINE,
                "--from-generator",
                "--rate",
                "20000",
                "--duration",
                "6s",
            ],
        );
        command.env("ELASTICSEARCH_URL", &search.url);
        if let Some(fault) = fault {
            command.env("QUICKCHAT_FAULT", fault);
        }
        command.output().unwrap()
    };
    // Killed after some sinks of epoch 3 wrote: the restart writes that epoch again.
    let killed = run(Some("mid-sinks@3"));
    assert!(!killed.status.success(), "{}", describe(&killed));
    assert!(
        String::from_utf8_lossy(&killed.stderr).contains("aborting at mid-sinks of epoch 3"),
        "{}",
        describe(&killed)
    );
    let resumed = run(None);
    assert!(resumed.status.success(), "{}", describe(&resumed));

    let items = lake_rows(
        &lake,
        "SELECT item_id, total_interactions, max_interactions_per_minute FROM gold.agg_interactions_item ORDER BY 1",
    )
    .await;
    let indexed: BTreeMap<String, Vec<String>> = search
        .documents(&index("agg_interactions_item"))
        .await
        .into_iter()
        .map(|(id, doc)| {
            assert_eq!(field(&doc, "item_id"), id);
            (
                id,
                vec![
                    field(&doc, "total_interactions"),
                    field(&doc, "max_interactions_per_minute"),
                ],
            )
        })
        .collect();
    assert!(items.len() > 10, "{items:?}");
    assert_eq!(indexed, items, "the item index holds the Delta table's rows");

    let users = lake_rows(
        &lake,
        "SELECT user_id, total_click, total_interactions FROM gold.agg_interactions_user ORDER BY 1",
    )
    .await;
    let user_documents = search.documents(&index("agg_interactions_user")).await;
    let refused = lake_rows(
        &lake,
        &format!(
            "SELECT DISTINCT location, reason FROM meta.quarantine WHERE location LIKE 'elasticsearch:{}:%'",
            index("agg_interactions_user")
        ),
    )
    .await;
    let (mut under, mut over) = (0, 0);
    for (user, values) in &users {
        let clicks: i64 = values[0].parse().unwrap();
        let location = format!("elasticsearch:{}:_id={user}", index("agg_interactions_user"));
        if clicks <= BYTE_MAX {
            under += 1;
            let document = &user_documents[user];
            assert_eq!(
                [field(document, "total_click"), field(document, "total_interactions")],
                [values[0].clone(), values[1].clone()],
                "{user}"
            );
            assert!(!refused.contains_key(&location), "{user} was never refused");
        } else {
            over += 1;
            let reason = &refused
                .get(&location)
                .unwrap_or_else(|| panic!("{user} with {clicks} clicks is not quarantined: {refused:?}"))[0];
            assert!(reason.contains("Elasticsearch refused the document"), "{reason}");
            assert!(reason.contains("mapper_parsing_exception"), "{reason}");
            if let Some(document) = user_documents.get(user) {
                let kept: i64 = field(document, "total_click").parse().unwrap();
                assert!(kept <= BYTE_MAX, "{user}: {document}");
            }
        }
    }
    assert!(
        under > 0 && over > 0,
        "users on both sides of {BYTE_MAX} clicks, or the test proves less: {users:?}"
    );
    assert_eq!(
        refused.len(),
        over,
        "only the users past the mapping's range are refused: {refused:?}"
    );

    // Alert ids are `<rule>|<alert_key>`, the key's columns joined as every sink joins them.
    let alerts = lake
        .query("SELECT rule, alert_key FROM gold.alerts ORDER BY 1, 2")
        .await;
    let alerts: Vec<String> = alerts.lines().skip(1).map(str::to_string).collect();
    assert!(!alerts.is_empty(), "the run raises alerts");
    let alert_documents = search.documents(&index("alerts")).await;
    assert_eq!(
        alert_documents.keys().cloned().collect::<Vec<_>>(),
        alerts,
        "each alert indexed once, under its rule and key"
    );
    for index in INDICES.map(index) {
        search.call(reqwest::Method::DELETE, &index, None).await;
    }
    project.drop_database().await;
}

/// Servers that are not there stop the run with exit 4, naming the address and what to check,
/// and the passwords given never show in anything printed, a dry run's description included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_servers_away_exit_4_naming_them_without_their_passwords() {
    use crate::stream_support::{input_files, write_files};
    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline(PIPELINE);
    project.create_topics(&pipeline).await;
    let input = tempfile::tempdir().unwrap();
    write_files(input.path(), &input_files(&pipeline, 500, 3));
    let lake = TestLake::local();
    let secret = "Sup3r-Secret-pw";
    for (variable, url, named, check) in [
        (
            "ELASTICSEARCH_URL",
            format!("http://etl:{secret}@127.0.0.1:1"),
            "http://etl:***@127.0.0.1:1",
            "is Elasticsearch running and ELASTICSEARCH_URL right?",
        ),
        (
            "MONGODB_URI",
            format!("mongodb://etl:{secret}@127.0.0.1:1/?serverSelectionTimeoutMS=300"),
            "mongodb://etl:***@127.0.0.1:1/",
            "is the server running, and MONGODB_URI right?",
        ),
    ] {
        let output = project
            .command(
                &lake,
                &[
                    "run",
                    PIPELINE,
                    "--from-files",
                    input.path().to_str().unwrap(),
                    "--retry-for",
                    "1s",
                ],
            )
            .env(variable, &url)
            .env("QUICKCHAT_LOG", "info")
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(4), "{variable}: {printed}");
        assert!(printed.contains(named), "{variable}: {printed}");
        assert!(printed.contains(check), "{variable}: {printed}");
        assert!(!printed.contains(secret), "{variable}: the password shows: {printed}");
    }
    // A dry run names every server it would read, without the passwords.
    let output = project
        .command(&lake, &["run", "full-pipeline", "--dry-run"])
        .env("MYSQL_URL", format!("mysql://etl:{secret}@127.0.0.1:1/users"))
        .env("MONGODB_URI", format!("mongodb://etl:{secret}@127.0.0.1:1/"))
        .env("ELASTICSEARCH_URL", format!("http://etl:{secret}@127.0.0.1:1"))
        .env("MONGODB_PASSWORD", secret)
        .env("ELASTICSEARCH_PASSWORD", secret)
        .output()
        .unwrap();
    let printed = describe(&output);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("<- mongodb mongodb://etl:***@127.0.0.1:1/ collection quickchat.messages"),
        "{printed}"
    );
    assert!(
        printed.contains("<- mysql mysql://etl:***@127.0.0.1:1/users table users"),
        "{printed}"
    );
    assert!(
        !printed.contains(secret),
        "the password shows in the dry run: {printed}"
    );
    project.drop_database().await;
}

/// Over https (socat in front of the test OpenSearch, with the test CA's certificate): with
/// `ELASTICSEARCH_SSL_CA` the item index gets the Delta table's rows; without it the server's
/// certificate is refused with exit 4, naming the server and the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_totals_are_indexed_over_https_and_an_unknown_certificate_is_refused() {
    use crate::stream_support::{input_files, write_files};
    let https = required_env("QUICKCHAT_TEST_ELASTICSEARCH_HTTPS_URL");
    let ca = required_env("QUICKCHAT_TEST_TLS_CA");
    let search = Search::new();
    let project = StreamProject::new(1_000).await;
    let suffix = with_suffixed_indices(&project, "tls");
    let pipeline = project.pipeline(PIPELINE);
    project.create_topics(&pipeline).await;
    let input = tempfile::tempdir().unwrap();
    write_files(input.path(), &input_files(&pipeline, 500, 3));
    let run = |lake: &TestLake, ssl_ca: Option<&str>| {
        let mut command = project.command(
            lake,
            &[
                "run",
                PIPELINE,
                "--from-files",
                input.path().to_str().unwrap(),
                "--retry-for",
                "1s",
            ],
        );
        command
            .env("ELASTICSEARCH_URL", &https)
            .env_remove("ELASTICSEARCH_SSL_CA");
        if let Some(ca) = ssl_ca {
            command.env("ELASTICSEARCH_SSL_CA", ca);
        }
        command.output().unwrap()
    };

    let lake = TestLake::local();
    let output = run(&lake, Some(&ca));
    assert!(output.status.success(), "{}", describe(&output));
    let items = lake_rows(
        &lake,
        "SELECT item_id, total_interactions FROM gold.agg_interactions_item",
    )
    .await;
    let indexed: BTreeMap<String, Vec<String>> = search
        .documents(&format!("agg_interactions_item-{suffix}"))
        .await
        .into_iter()
        .map(|(id, doc)| (id, vec![field(&doc, "total_interactions")]))
        .collect();
    assert!(!items.is_empty(), "no items");
    assert_eq!(indexed, items, "the item index holds the Delta table's rows");

    let refused = run(&TestLake::local(), None);
    let printed = describe(&refused);
    assert_eq!(refused.status.code(), Some(4), "{printed}");
    assert!(
        printed.contains(&https) && printed.contains("ELASTICSEARCH_SSL_CA"),
        "{printed}"
    );
}
