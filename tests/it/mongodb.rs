//! Against the MongoDB-wire server `scripts/test.sh` starts (FerretDB): the bronze jobs read the
//! collections `generate --load-mongodb` loaded exactly as they read the export files, for all
//! dates and for one day (the day pushed to the server as a filter).

use chrono::NaiveDate;
use quickchat_etl::config::MongoSettings;
use quickchat_etl::query::DateRange;

use crate::support::{Servers, TestLake, binary, describe, golden_spec, registry, required_env, unique_name};

const BRONZE_MONGO_JOBS: [&str; 3] = ["bronze-messages", "bronze-conversations", "bronze-calls"];
const BRONZE_MONGO_TABLES: [&str; 3] = ["bronze.messages", "bronze.conversations", "bronze.calls"];

/// The golden data set written under `dir/lake/landing` and loaded into `database`; returns
/// the lines `generate` printed.
fn generate_and_load(dir: &std::path::Path, uri: &str, database: &str) -> String {
    let spec = golden_spec();
    let landing = dir.join("lake/landing");
    let (seed, users, days, start) = (
        spec.seed.to_string(),
        spec.users.to_string(),
        spec.days.to_string(),
        spec.start_date.to_string(),
    );
    let output = binary(
        dir,
        &[
            "generate",
            "--out",
            landing.to_str().unwrap(),
            "--seed",
            &seed,
            "--users",
            &users,
            "--days",
            &days,
            "--start-date",
            &start,
            "--load-mongodb",
            "--mongodb-uri",
            uri,
            "--mongodb-database",
            database,
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The number before `what` in generate's line about `collection`.
fn figure(printed: &str, collection: &str, what: &str) -> usize {
    let line = printed
        .lines()
        .find(|l| l.contains(&format!(".{collection} at")))
        .unwrap_or_else(|| panic!("no line about {collection}: {printed}"));
    let before = &line[..line.find(what).unwrap_or_else(|| panic!("no `{what}` in {line}"))];
    before.split_whitespace().last().unwrap().parse().unwrap()
}

async fn run_all(lake: &TestLake, range: DateRange, mongodb: Option<&MongoSettings>) {
    for job in BRONZE_MONGO_JOBS {
        let servers = Servers {
            mongodb,
            ..Servers::default()
        };
        for report in lake.run(&registry(), job, range, servers).await {
            if let Err(e) = &report.outcome {
                panic!("job {} failed: {e}", report.job);
            }
        }
    }
}

/// Rows of a table: the same query over both lakes (duplicates kept, sorted).
async fn rows(lake: &TestLake, sql: &str) -> Vec<String> {
    lake.query(sql).await.lines().skip(1).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bronze_jobs_read_mongodb_exactly_like_its_export_files() {
    let uri = required_env("QUICKCHAT_TEST_MONGODB_URI");
    let database = unique_name("quickchat_it");
    let dir = tempfile::tempdir().unwrap();
    let printed = generate_and_load(dir.path(), &uri, &database);
    let settings = MongoSettings {
        uri,
        database: database.clone(),
        user: None,
        password: None,
    };

    let from_files = TestLake::at(&dir.path().join("lake"));
    run_all(&from_files, DateRange::All, None).await;
    let from_mongodb = TestLake::local();
    run_all(&from_mongodb, DateRange::All, Some(&settings)).await;

    for (table, collection) in BRONZE_MONGO_TABLES.iter().zip(["messages", "conversations", "calls"]) {
        // The server holds each exported document once: the export's second copies are the
        // only rows the files give more of.
        let distinct = format!("SELECT DISTINCT * EXCLUDE (_ingested_at, _run_id) FROM {table}");
        let all = format!("SELECT * EXCLUDE (_ingested_at, _run_id) FROM {table}");
        let from_server = rows(&from_mongodb, &all).await;
        assert!(!from_server.is_empty(), "{table} is empty");
        assert_eq!(from_server, rows(&from_files, &distinct).await, "{table}");
        let twice = figure(&printed, collection, "documents exported twice");
        assert_eq!(
            rows(&from_files, &all).await.len() - from_server.len(),
            twice,
            "{table}"
        );
    }

    // The same documents set aside for the same reasons; the export's lines cut short are not
    // in the server at all.
    let quarantine = "SELECT source, rule, reason FROM meta.quarantine";
    let from_server = rows(&from_mongodb, quarantine).await;
    assert!(
        from_server.iter().any(|r| r.contains("raw_messages")),
        "the document with a string sender_id is quarantined: {from_server:?}"
    );
    let from_export: Vec<String> = rows(&from_files, quarantine).await;
    let cut_short: usize = ["messages", "conversations", "calls"]
        .iter()
        .map(|c| figure(&printed, c, "lines cut short"))
        .sum();
    assert_eq!(
        from_export.len() - from_server.len(),
        cut_short,
        "{from_export:#?}\n{from_server:#?}"
    );
    assert!(from_server.iter().all(|r| from_export.contains(r)), "{from_server:#?}");
    let locations = rows(
        &from_mongodb,
        "SELECT location FROM meta.quarantine WHERE source = 'raw_messages'",
    )
    .await;
    let prefix = format!("mongodb:{database}.messages:_id=");
    assert!(locations.iter().all(|l| l.starts_with(&prefix)), "{locations:?}");

    // One day: asked of the server, and the same rows as the files give for that day.
    let day = NaiveDate::from_ymd_opt(2024, 3, 6).unwrap();
    let one_day = DateRange::Days { start: day, end: day };
    let day_from_mongodb = TestLake::local();
    run_all(&day_from_mongodb, one_day, Some(&settings)).await;
    for table in BRONZE_MONGO_TABLES {
        let day_rows =
            format!("SELECT DISTINCT * EXCLUDE (_ingested_at, _run_id) FROM {table} WHERE event_date = '{day}'");
        let from_server = rows(&day_from_mongodb, &day_rows).await;
        // (The conversations were all started before that day.)
        assert!(
            !from_server.is_empty() || table == "bronze.conversations",
            "{table} on {day}"
        );
        assert_eq!(from_server, rows(&from_files, &day_rows).await, "{table} on {day}");
    }
    let read = day_from_mongodb
        .run(
            &registry(),
            "bronze-messages",
            one_day,
            Servers {
                mongodb: Some(&settings),
                ..Servers::default()
            },
        )
        .await
        .remove(0)
        .rows_read;
    let all_documents = figure(&printed, "messages", "documents into");
    assert!(
        read > 0 && (read as usize) < all_documents / 4,
        "a day of eight is asked of the server: {read} of {all_documents} documents read"
    );
}

/// `(window start in seconds, id, total_interactions)` of every document of a `kpi_db`
/// collection but the sentinel's.
async fn window_documents(database: &mongodb::Database, collection: &str, id: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let documents: Vec<mongodb::bson::Document> = database
        .collection::<mongodb::bson::Document>(collection)
        .find(mongodb::bson::doc! {id: {"$ne": "sentinel"}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut rows: Vec<String> = documents
        .iter()
        .map(|d| {
            format!(
                "{}|{}|{}",
                d.get_datetime("window_start").unwrap().timestamp_millis() / 1000,
                d.get_str(id).unwrap(),
                d.get_i64("total_interactions").unwrap()
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The interaction pipeline writes its 10-minute windows to `kpi_db` as the job it replaces
/// did; killed after an epoch's sinks and before its commit, then resumed, the collections hold
/// exactly the Delta tables' rows (window starts as dates), each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_windows_reach_mongodb_once_across_a_kill() {
    use crate::stream_support::{StreamProject, input_files_at_rate, sentinels, write_files};
    let uri = required_env("QUICKCHAT_TEST_MONGODB_URI");
    let kpi_database = unique_name("kpi_db");
    let project = StreamProject::new(2_000).await;
    let pipeline = project.pipeline("interaction-analytics");
    project.create_topics(&pipeline).await;
    // Two events a second: windows close in every micro-batch, not only at the end.
    let files = crate::stream_support::concat(input_files_at_rate(&pipeline, 20_000, 2.0, 5), &sentinels(&pipeline));
    let input = tempfile::tempdir().unwrap();
    write_files(input.path(), &files);
    let lake = TestLake::local();
    let run = |fault: Option<&str>| {
        let mut command = project.command(
            &lake,
            &[
                "run",
                "interaction-analytics",
                "--from-files",
                input.path().to_str().unwrap(),
            ],
        );
        command
            .env("MONGODB_URI", &uri)
            .env("MONGODB_KPI_DATABASE", &kpi_database);
        if let Some(fault) = fault {
            command.env("QUICKCHAT_FAULT", fault);
        }
        command.output().unwrap()
    };
    let killed = run(Some("after-sinks@6"));
    assert!(
        String::from_utf8_lossy(&killed.stderr).contains("aborting at after-sinks of epoch 6"),
        "{}",
        describe(&killed)
    );
    let resumed = run(None);
    assert!(resumed.status.success(), "{}", describe(&resumed));

    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let database = client.database(&kpi_database);
    for (collection, id) in [("user_interactions", "user_id"), ("item_interactions", "item_id")] {
        let delta = rows(
            &lake,
            &format!(
                "SELECT CAST(to_unixtime(window_start) AS BIGINT), {id}, total_interactions FROM gold.{collection} \
                 WHERE {id} <> 'sentinel' ORDER BY 1, 2"
            ),
        )
        .await;
        let mut delta: Vec<String> = delta;
        delta.sort();
        let documents = window_documents(&database, collection, id).await;
        assert!(delta.len() > 100, "{collection}: {delta:?}");
        let missing: Vec<&String> = delta.iter().filter(|r| !documents.contains(r)).collect();
        let extra: Vec<&String> = documents.iter().filter(|r| !delta.contains(r)).collect();
        assert!(
            documents == delta,
            "kpi_db.{collection} holds gold.{collection}'s rows once: {} documents, {} rows; missing {missing:?}, \
             more {extra:?}",
            documents.len(),
            delta.len()
        );
    }
    let marker = database
        .collection::<mongodb::bson::Document>("quickchat_epochs")
        .find_one(mongodb::bson::doc! {"collection": "user_interactions"})
        .await
        .unwrap()
        .expect("an epoch marker");
    assert!(marker.get_i64("epoch").unwrap() > 6, "{marker}");
    database.drop().await.unwrap();
    project.drop_database().await;
}

/// A batch job whose sink is a MongoDB collection (`export-daily-metrics`, a pipeline file
/// this test adds to a copy of the project): one document per day with gold.daily_metrics'
/// values, nested map included; a rerun of one day replaces that day's documents (a stale
/// document of that day goes, one of another day stays) and never doubles one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_writes_its_result_to_mongodb_and_a_rerun_replaces_its_days() {
    use mongodb::bson::{Document, doc};

    use crate::support::{generate_landing, project_copy};
    let uri = required_env("QUICKCHAT_TEST_MONGODB_URI");
    let database_name = unique_name("export_db");
    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 12, 3);
    let project = project_copy();
    std::fs::write(
        project.path().join("pipelines/export-daily-metrics.toml"),
        "description = \"gold.daily_metrics in MongoDB\"\nsql = \"sql/export/daily_metrics.sql\"\n\
         depends_on = [\"gold-daily-metrics\"]\n\n[sink]\nkind = \"mongodb\"\ncollection = \"daily_metrics\"\n\
         key = [\"date\"]\npartition_by = [\"date\"]\nmode = \"replace_partitions\"\n",
    )
    .unwrap();
    std::fs::write(
        project.path().join("sql/export/daily_metrics.sql"),
        "SELECT * FROM gold.daily_metrics WHERE date BETWEEN $start_date AND $end_date\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec![
            "--project",
            project.path().to_str().unwrap(),
            "--mongodb-uri",
            &uri,
            "--mongodb-database",
            &database_name,
            "run",
            "export-daily-metrics",
        ];
        all.extend_from_slice(args);
        let output = binary(dir.path(), &all);
        assert!(output.status.success(), "{}", describe(&output));
        output
    };
    // Upstream without the server: with MONGODB_URI set, the bronze jobs read MongoDB.
    let upstream = binary(
        dir.path(),
        &[
            "--project",
            project.path().to_str().unwrap(),
            "run",
            "gold-daily-metrics",
            "--upstream",
        ],
    );
    assert!(upstream.status.success(), "{}", describe(&upstream));
    run(&[]);

    let metrics = binary(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-e",
            "SELECT date, dau, total_messages, message_type_distribution['text'] AS text FROM gold.daily_metrics ORDER BY date",
        ],
    );
    assert!(metrics.status.success(), "{}", describe(&metrics));
    let expected: Vec<String> = String::from_utf8_lossy(&metrics.stdout)
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(|f| if f.is_empty() { "0" } else { f }).collect();
            fields.join(",")
        })
        .collect();
    assert!(expected.len() >= 3, "{expected:?}");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let collection = client.database(&database_name).collection::<Document>("daily_metrics");
    let documents = || async {
        use futures::TryStreamExt;
        let mut shown: Vec<String> = collection
            .find(doc! {})
            .await
            .unwrap()
            .try_collect::<Vec<Document>>()
            .await
            .unwrap()
            .iter()
            .map(|d| {
                let text = d
                    .get_document("message_type_distribution")
                    .ok()
                    .and_then(|types| types.get_i64("text").ok())
                    .unwrap_or(0);
                format!(
                    "{},{},{},{},{}",
                    d.get_str("_id").unwrap(),
                    d.get_str("date").unwrap(),
                    d.get_i64("dau").unwrap(),
                    d.get_i64("total_messages").unwrap(),
                    text
                )
            })
            .collect();
        shown.sort();
        shown
    };
    let with_ids: Vec<String> = expected
        .iter()
        .map(|line| format!("{},{line}", line.split(',').next().unwrap()))
        .collect();
    assert_eq!(documents().await, with_ids, "a document per day, `_id` the key");

    let day = expected[1].split(',').next().unwrap().to_string();
    let first_run = collection
        .find_one(doc! {"_id": &day})
        .await
        .unwrap()
        .unwrap()
        .get_str("quickchat_run")
        .unwrap()
        .to_string();
    for (id, date) in [("stale-that-day", day.as_str()), ("stale-another-day", "1999-01-01")] {
        collection
            .insert_one(
                doc! {"_id": id, "date": date, "dau": 0_i64, "total_messages": 0_i64, "quickchat_run": "an-old-run"},
            )
            .await
            .unwrap();
    }
    run(&["--date", &day]);
    let mut after = with_ids.clone();
    after.push("stale-another-day,1999-01-01,0,0,0".to_string());
    after.sort();
    assert_eq!(
        documents().await,
        after,
        "the day's documents replaced, its stale one gone, other days kept"
    );
    let rerun = collection.find_one(doc! {"_id": &day}).await.unwrap().unwrap();
    assert_ne!(rerun.get_str("quickchat_run").unwrap(), first_run, "{rerun}");
    client.database(&database_name).drop().await.unwrap();
}

/// `bench --only sinks` against both document servers: each pass writes every document once
/// (the bench itself checks the count the server holds after each pass and fails otherwise),
/// and the database and the index it made are gone when it ends.
#[tokio::test(flavor = "multi_thread")]
async fn the_sink_bench_writes_every_document_once_to_both_servers_and_drops_what_it_made() {
    let uri = required_env("QUICKCHAT_TEST_MONGODB_URI");
    let search = required_env("QUICKCHAT_TEST_ELASTICSEARCH_URL");
    let project = crate::support::project_copy();
    let output = binary(
        project.path(),
        &[
            "bench",
            "--only",
            "sinks",
            "--sink-rows",
            "200",
            "--mongodb-uri",
            &uri,
            "--elasticsearch-url",
            &search,
        ],
    );
    assert!(output.status.success(), "{}", describe(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    for phase in [
        "mongodb new",
        "mongodb rewrite",
        "elasticsearch new",
        "elasticsearch rewrite",
    ] {
        let line = printed
            .lines()
            .find(|l| l.starts_with(&format!("sinks: {phase}: ")))
            .unwrap_or_else(|| panic!("no figures for {phase} in:\n{printed}"));
        assert!(line.contains(": 200 documents in "), "{line}");
    }
    // What it made is named in its first lines: `... database quickchat_bench_<pid> ...` and
    // `... index quickchat-bench-<pid> ...`.
    let made = |marker: &str| -> String {
        let line = printed
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("{printed}"));
        let name = &line[line.find(marker).unwrap() + marker.len()..];
        name.split_whitespace().next().unwrap().to_string()
    };
    let database = made(" database ");
    let index = made(" index ");
    let databases = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .list_database_names()
        .await
        .unwrap();
    assert!(!databases.contains(&database), "{database} left behind: {databases:?}");
    let status = reqwest::get(format!("{search}/{index}")).await.unwrap().status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "index {index} left behind");
}
