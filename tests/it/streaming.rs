//! Streaming pipelines end to end, through the binary, against the Kafka broker (Apache Kafka) and
//! MariaDB that `scripts/test.sh` starts: the same events give the same tables from Kafka and
//! from files, with any micro-batch size, and the same numbers as plain batch SQL over the
//! bronze tables; a run killed at any point and restarted holds every event exactly once; broker
//! faults lose nothing; late and malformed records land where promised.

use std::path::Path;
use std::time::Duration;

use quickchat_etl::config::stream::BatchLimit;
use quickchat_etl::config::stream_pipeline::StreamPipeline;

use crate::stream_support::{
    StreamProject, assert_same, concat, input_files, mock_cluster_with, produce_files, produce_files_to, query,
    sentinels, stream_tables, write_files,
};
use crate::support::{TestLake, describe};

/// Plain batch SQL over the bronze tables, and the streaming gold table it must equal.
const SAME_AS_BATCH_SQL: &[(&str, &str, &str)] = &[
    (
        "clickstream-analytics",
        "SELECT window_start, product_id, category, view_count, unique_users FROM gold.page_views",
        "SELECT date_bin(INTERVAL '1 minute', \"timestamp\") AS window_start, product_id, category, count(*), \
         count(DISTINCT user_id) FROM bronze.clickstream WHERE user_id <> 'sentinel' GROUP BY 1, 2, 3",
    ),
    (
        "clickstream-analytics",
        "SELECT window_start, category, transaction_count, total_revenue FROM gold.revenue",
        "SELECT date_bin(INTERVAL '5 minutes', \"timestamp\") AS window_start, category, count(*), sum(amount) \
         FROM bronze.transactions WHERE user_id <> 'sentinel' GROUP BY 1, 2",
    ),
    (
        "clickstream-analytics",
        "SELECT window_start, product_id, clicks, purchases FROM gold.conversions",
        // `sum(CASE ...)` counts as `count(t.transaction_id)` does, but keeps DataFusion's own hash
        // join: the streaming side's counting join (query/counting_join.rs) is what is checked.
        "SELECT date_bin(INTERVAL '5 minutes', c.\"timestamp\") AS window_start, c.product_id, count(c.event_id), \
         sum(CASE WHEN t.transaction_id IS NULL THEN 0 ELSE 1 END) \
         FROM bronze.clickstream c LEFT JOIN bronze.transactions t \
         ON t.user_id = c.user_id AND t.product_id = c.product_id \
         AND t.\"timestamp\" BETWEEN c.\"timestamp\" AND c.\"timestamp\" + INTERVAL '10 minutes' \
         WHERE c.action = 'click' AND c.user_id <> 'sentinel' GROUP BY 1, 2",
    ),
    (
        "chat-analytics",
        "SELECT window_start, message_count, p50_latency_ms, p99_latency_ms FROM gold.global_metrics_minute",
        "SELECT date_bin(INTERVAL '1 minute', sent_at) AS window_start, count(*), \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY (CAST(delivered_at AS BIGINT) - CAST(sent_at AS BIGINT)) / 1000.0), \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY (CAST(delivered_at AS BIGINT) - CAST(sent_at AS BIGINT)) / 1000.0) \
         FROM bronze.chat_messages WHERE user_id <> 'sentinel' GROUP BY 1",
    ),
    (
        "chat-analytics",
        "SELECT window_start, channel_id, message_count, active_users FROM gold.channel_metrics_minute",
        "SELECT date_bin(INTERVAL '1 minute', sent_at) AS window_start, channel_id, count(*), count(DISTINCT user_id) \
         FROM bronze.chat_messages WHERE user_id <> 'sentinel' GROUP BY 1, 2",
    ),
    (
        "interaction-analytics",
        "SELECT user_id, total_click, total_view, total_interactions FROM gold.agg_interactions_user",
        "SELECT user_id, sum(CASE WHEN interaction_type = 'click' THEN 1 ELSE 0 END), \
         sum(CASE WHEN interaction_type = 'view' THEN 1 ELSE 0 END), count(*) FROM bronze.interactions GROUP BY 1",
    ),
];

fn without_header(dump: &str) -> Vec<String> {
    let mut lines: Vec<String> = dump
        .lines()
        .skip(1)
        .filter(|l| !l.contains("sentinel") && !l.contains("2024-01-03"))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// The same events from Kafka, from files in one micro-batch and from files in small
/// micro-batches give identical tables (events are up to 20 s out of order, and Kafka
/// interleaves its three partitions), equal to plain batch SQL over bronze; MySQL's live
/// tables end equal to the final Delta windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_gives_the_same_tables_from_kafka_and_from_files() {
    for (name, events) in [
        ("clickstream-analytics", 30_000),
        ("chat-analytics", 20_000),
        ("interaction-analytics", 20_000),
    ] {
        let project = StreamProject::new(2_000).await;
        let pipeline = project.pipeline(name);
        let files = input_files(&pipeline, events, 11);
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &concat(files.clone(), &sentinels(&pipeline)));
        let dir_arg = dir.path().to_str().unwrap();

        project.create_topics(&pipeline).await;
        let whole = TestLake::local();
        project.set_max_records(1_000_000);
        let out = project.run_ok(&whole, &["run", name, "--from-files", dir_arg]);
        assert!(out.contains("1 epoch(s)"), "{out}");
        assert!(out.contains("late 0, duplicates 0, quarantined 0"), "{out}");
        project.set_max_records(2_000);

        let small = TestLake::local();
        let out = project.run_ok(&small, &["run", name, "--from-files", dir_arg]);
        assert!(out.contains("late 0, duplicates 0, quarantined 0"), "{out}");

        let kafka = TestLake::local();
        // The events, then (once they are read) the sentinels that close every window.
        let sent = produce_files(&pipeline, &files).await;
        let output = project.run(&kafka, &["run", name, "--until-caught-up"]);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            out.contains(&format!("{sent} records")),
            "{sent} sent: {}",
            describe(&output)
        );
        assert!(out.contains("late 0, duplicates 0, quarantined 0"), "{out}");
        produce_files(&pipeline, &sentinels(&pipeline)).await;
        project.run_ok(&kafka, &["run", name, "--until-caught-up"]);

        let expected = stream_tables(&whole).await;
        assert!(expected.len() >= 4, "{name}: {:?}", expected.keys());
        assert_same(
            &expected,
            &stream_tables(&small).await,
            &format!("{name}: small micro-batches"),
        );
        assert_same(&expected, &stream_tables(&kafka).await, &format!("{name}: from Kafka"));

        for (pipeline_name, streaming, batch) in SAME_AS_BATCH_SQL {
            if *pipeline_name == name {
                let got = without_header(&query(&kafka, streaming).await);
                let want = without_header(&query(&kafka, batch).await);
                assert!(!want.is_empty(), "{batch}");
                assert_eq!(got, want, "{name}: {streaming}");
            }
        }
        if name == "chat-analytics" {
            let delta = without_header(
                &query(
                    &kafka,
                    "SELECT channel_id, message_count, active_users FROM gold.channel_metrics_minute",
                )
                .await,
            );
            let mysql = project
                .mysql_rows("SELECT channel_id, message_count, active_users FROM channel_metrics_minute")
                .await
                .into_iter()
                .filter(|l| !l.contains("sentinel"))
                .collect::<Vec<_>>();
            assert_eq!(mysql, delta, "MySQL's live rows end as the final windows");
        }
        project.drop_database().await;
        // Give the broker's memory back between pipelines.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lines that cannot be used: not JSON, a wrong type, no event time.
/// Records that are not one usable clickstream event, each quarantined with the reason, in
/// both input modes (a Kafka message and a line of a file go through the same decoder).
const MALFORMED: [(&str, &str); 6] = [
    ("this is not JSON", "whilst parsing"),
    (
        r#"{"event_id":"bad_type","user_id":"u","timestamp":"not a time"}"#,
        "failed to parse \"not a time\"",
    ),
    (
        r#"{"event_id":"no_time","user_id":"u","product_id":"prod_001"}"#,
        "no event time",
    ),
    (
        r#"{"event_id":"two_a","user_id":"u","timestamp":"2024-01-01T00:00:01Z"}{"event_id":"two_b","user_id":"u","timestamp":"2024-01-01T00:00:02Z"}"#,
        "more than one JSON value",
    ),
    (r#"[{"event_id":"in_an_array"}]"#, "expected {"),
    (
        r#"{"event_id":"cut","user_id":"u","timestamp":"2024-01-01T00:0"#,
        "not one complete JSON object",
    ),
];

/// Killed at each stage of an epoch, and with SIGKILL at a moment of the OS's choosing, then
/// restarted, a Kafka run ends with every event exactly once in bronze, gold, the quarantine and
/// MySQL: the same tables as an uninterrupted run of the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_point_and_restarted_counts_every_event_once() {
    let name = "clickstream-analytics";
    let crashed = StreamProject::new(1_500).await;
    let reference = StreamProject::new(1_500).await;
    crashed.set_setting("snapshot_interval", "\"1s\"");
    let mut inputs = Vec::new();
    for project in [&crashed, &reference] {
        let pipeline = project.pipeline(name);
        project.create_topics(&pipeline).await;
        let files = input_files(&pipeline, 24_000, 5);
        let mut with_bad = files.clone();
        for (line, _) in MALFORMED {
            with_bad
                .get_mut(&project.topic("clickstream"))
                .unwrap()
                .extend_from_slice(format!("{line}\n").as_bytes());
        }
        produce_files(&pipeline, &with_bad).await;
        inputs.push(pipeline);
    }

    let lake = TestLake::local();
    for fault in ["after-offsets@2", "mid-sinks@3", "after-sinks@5", "after-commit@7"] {
        let output = crashed
            .command(&lake, &["run", name, "--until-caught-up"])
            .env("QUICKCHAT_FAULT", fault)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{fault}: {}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr)
                .contains(&format!("aborting at {}", fault.replace('@', " of epoch "))),
            "{fault}: {}",
            describe(&output)
        );
    }
    // SIGKILL a continuous run once it has committed a few more epochs.
    let commits = Path::new(lake.root_arg.as_str())
        .join("_checkpoints")
        .join(name)
        .join("kafka/commits");
    let count = || std::fs::read_dir(&commits).map(|d| d.count()).unwrap_or(0);
    let before = count();
    let mut child = crashed.command(&lake, &["run", name]).spawn().unwrap();
    let started = std::time::Instant::now();
    while count() < before + 3 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        count() >= before + 3,
        "the continuous run committed epochs before it was killed"
    );
    // The restart replays the epochs committed since the last snapshot, if any, then reads on
    // (where the kill fell between snapshots and reads varies with the machine's load).
    let out = crashed.run_ok(&lake, &["run", name, "--until-caught-up"]);
    assert!(out.contains("caught up"), "{out}");

    let reference_lake = TestLake::local();
    reference.run_ok(&reference_lake, &["run", name, "--until-caught-up"]);
    for (project, lake, pipeline) in [(&crashed, &lake, &inputs[0]), (&reference, &reference_lake, &inputs[1])] {
        produce_files(pipeline, &sentinels(pipeline)).await;
        project.run_ok(lake, &["run", name, "--until-caught-up"]);
    }

    assert_eq!(
        lake.query("SELECT count(*), count(DISTINCT event_id) FROM bronze.clickstream WHERE user_id <> 'sentinel'")
            .await,
        "count(*)|count(DISTINCT bronze.clickstream.event_id)\n19200|19200\n"
    );
    assert_eq!(
        lake.query("SELECT count(*), count(DISTINCT kafka_offset) FROM meta.quarantine")
            .await,
        format!(
            "count(*)|count(DISTINCT meta.quarantine.kafka_offset)\n{0}|{0}\n",
            MALFORMED.len()
        ),
        "each bad record quarantined once"
    );
    assert_same(
        &stream_tables(&reference_lake).await,
        &stream_tables(&lake).await,
        "killed and restarted",
    );
    for table in ["page_views", "revenue"] {
        let sql = format!("SELECT * FROM {table}");
        assert_eq!(
            crashed.mysql_rows(&sql).await,
            reference.mysql_rows(&sql).await,
            "MySQL {table} after the crashes"
        );
    }
    let views = crashed
        .mysql_rows("SELECT sum(view_count) FROM page_views WHERE product_id <> 'sentinel'")
        .await;
    assert_eq!(views, ["19200"]);
    crashed.drop_database().await;
    reference.drop_database().await;
}

/// Late, duplicate and malformed records land where promised: the quarantine with their raw
/// bytes, position and reason; `<source>_late` with the watermark they missed; repeats of a key
/// nowhere. None of them reaches the gold tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_duplicate_and_malformed_records_land_where_promised() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline(name);
    let mut files = input_files(&pipeline, 5_000, 9);
    let clicks = files.get_mut(&project.topic("clickstream")).unwrap();
    let first_line = clicks.split(|b| *b == b'\n').next().unwrap().to_vec();
    let lines_before = clicks.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    for (line, _) in MALFORMED {
        clicks.extend_from_slice(format!("{line}\n").as_bytes());
    }
    clicks.extend_from_slice(&first_line);
    clicks.push(b'\n');
    let late = r#"{"event_id":"late_one","user_id":"user_1","session_id":"s","product_id":"prod_001","category":"electronics","action":"view","timestamp":"2023-12-31T22:00:00Z","page_url":"/","referrer":"direct"}"#;
    clicks.extend_from_slice(format!("{late}\n").as_bytes());
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("events");
    std::fs::create_dir(&dir).unwrap();
    write_files(&dir, &files);
    let lake = TestLake::local();
    // The folder given relative to the working directory, as a user types it.
    let run = project
        .command(&lake, &["run", name, "--from-files", "events"])
        .current_dir(parent.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", crate::support::describe(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        out.contains(&format!("late 1, duplicates 1, quarantined {}", MALFORMED.len())),
        "{out}"
    );

    let topic = project.topic("clickstream");
    let quarantine = lake
        .query("SELECT source, kafka_topic, kafka_partition, kafka_offset, CAST(raw AS VARCHAR) AS raw, reason FROM meta.quarantine")
        .await;
    // Each with its position (the line number for files) and raw bytes (the dump sorts JSON keys).
    for (n, (_, reason)) in MALFORMED.iter().enumerate() {
        let row = quarantine
            .lines()
            .find(|l| l.starts_with(&format!("clickstream|{topic}|0|{}|", lines_before + n)))
            .unwrap_or_else(|| panic!("line {} not quarantined:\n{quarantine}", lines_before + n));
        assert!(row.contains(reason), "{row}");
    }
    assert!(quarantine.contains("|this is not JSON|"), "{quarantine}");
    let late_rows = lake
        .query("SELECT event_id, _watermark > \"timestamp\" AS missed FROM bronze.clickstream_late")
        .await;
    assert_eq!(late_rows, "event_id|missed\nlate_one|true\n");
    assert_eq!(
        lake.query("SELECT count(*) FROM bronze.clickstream WHERE event_id = 'late_one'")
            .await,
        "count(*)\n1\n",
        "bronze keeps every event, late ones too"
    );
    let clicks_total = lines_before as i64;
    assert_eq!(
        lake.query("SELECT sum(view_count) FROM gold.page_views").await,
        format!("sum(gold.page_views.view_count)\n{clicks_total}\n"),
        "gold counts each on-time event once"
    );
    project.drop_database().await;
}

/// A files run that stopped after logging an epoch, restarted over a file that has since been
/// cut shorter, cannot read that epoch again: it stops with an error naming the file instead of
/// crashing or reading less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_over_a_changed_file_is_an_error_naming_it() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline(name);
    let mut files = input_files(&pipeline, 5_000, 3);
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &files);
    let lake = TestLake::local();
    let dir_arg = dir.path().to_str().unwrap();
    let crashed = project
        .command(&lake, &["run", name, "--from-files", dir_arg])
        .env("QUICKCHAT_FAULT", "after-offsets@2")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "{}", crate::support::describe(&crashed));

    let topic = project.topic("clickstream");
    let clicks = files.get_mut(&topic).unwrap();
    let ten_lines = clicks
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(9)
        .unwrap()
        .0
        + 1;
    clicks.truncate(ten_lines);
    write_files(dir.path(), &files);
    let rerun = project
        .command(&lake, &["run", name, "--from-files", dir_arg])
        .output()
        .unwrap();
    assert!(!rerun.status.success(), "{}", crate::support::describe(&rerun));
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(
        stderr.contains(&format!("{topic}.jsonl")) && stderr.contains("but the file has 10 lines"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    project.drop_database().await;
}

/// The Kafka input reads the next micro-batch ahead; asked for other positions than the ones it
/// read ahead from (a replay, a restart), it reads those instead: a micro-batch is always the
/// records from the positions asked for, none skipped, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_read_ahead_is_used_only_for_the_positions_it_was_read_from() {
    use std::collections::BTreeMap;

    use quickchat_etl::sources::kafka::KafkaInput;
    use quickchat_etl::sources::positions::{InputBatch, Positions};

    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline("clickstream-analytics");
    let (_cluster, bootstrap, _) = mock_cluster_with(&pipeline, 1, &input_files(&pipeline, 4_000, 3)).await;

    /// `source -> partition -> offsets` of a batch's records, and where it ends.
    fn read(batch: &InputBatch) -> (BTreeMap<String, BTreeMap<i32, Vec<i64>>>, Positions) {
        let mut offsets: BTreeMap<String, BTreeMap<i32, Vec<i64>>> = BTreeMap::new();
        for (source, records) in &batch.records {
            for (partition, offset) in records.partitions.iter().zip(&records.offsets) {
                offsets
                    .entry(source.clone())
                    .or_default()
                    .entry(*partition)
                    .or_default()
                    .push(*offset);
            }
        }
        let ends = batch
            .ranges
            .iter()
            .map(|(s, p)| (s.clone(), p.iter().map(|(part, (_, end))| (*part, *end)).collect()))
            .collect();
        (offsets, ends)
    }

    /// Every partition's records are the offsets right after `from`, and the batch ends after
    /// its last one; returns how many records.
    fn follows(read: &(BTreeMap<String, BTreeMap<i32, Vec<i64>>>, Positions), from: &Positions) -> usize {
        let (offsets, ends) = read;
        for (source, partitions) in from {
            for (partition, at) in partitions {
                let got = offsets
                    .get(source)
                    .and_then(|p| p.get(partition))
                    .cloned()
                    .unwrap_or_default();
                let expected: Vec<i64> = (*at..*at + got.len() as i64).collect();
                assert_eq!(got, expected, "{source}/{partition} goes on from offset {at}");
                assert_eq!(
                    ends[source][partition],
                    at + got.len() as i64,
                    "{source}/{partition} ends after its last record"
                );
            }
        }
        offsets.values().flat_map(|p| p.values()).map(Vec::len).sum()
    }

    let mut input = tokio::task::block_in_place(|| KafkaInput::connect(&pipeline, &bootstrap)).unwrap();
    let start = input.start_positions().await.unwrap();
    let wait = Duration::from_secs(10);
    let records = BatchLimit {
        records: 500,
        bytes: 64 << 20,
    };
    let first = read(&input.next(&start, records, wait).await.unwrap());
    assert_eq!(follows(&first, &start), 500);
    // The next batch is being read ahead from where `first` ended; asking for `start` again
    // reads from `start` (which partitions come first may differ: both are the stream from there).
    let again = read(&input.next(&start, records, wait).await.unwrap());
    assert_eq!(follows(&again, &start), 500);
    // The read ahead from where `again` ended is taken: it goes on exactly from there.
    let second = read(&input.next(&again.1, records, wait).await.unwrap());
    assert_eq!(follows(&second, &again.1), 500);
    let third = read(&input.next(&second.1, records, wait).await.unwrap());
    assert_eq!(follows(&third, &second.1), 500);
    // A micro-batch ends at its bytes too (events are 100-200 bytes): the read ahead, asked
    // for 500 records, is not used for a smaller batch.
    let bytes = BatchLimit {
        records: 500,
        bytes: 2_000,
    };
    let small = read(&input.next(&third.1, bytes, wait).await.unwrap());
    let count = follows(&small, &third.1);
    assert!((5..=25).contains(&count), "{count} records of 2,000 bytes");
}

/// Broker faults from librdkafka's mock cluster — failing fetches, a partition leader moving,
/// a broker going down and coming back — delay the stream but lose and double nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_lose_and_double_nothing() {
    use quickchat_etl::catalog::Lake;
    use quickchat_etl::metrics::RunReport;
    use quickchat_etl::sources::Input;
    use quickchat_etl::sources::kafka::KafkaInput;
    use quickchat_etl::stream::engine::{Engine, RunOptions, SinkSettings};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline("clickstream-analytics");
    let files = input_files(&pipeline, 10_000, 3);
    let (cluster, bootstrap, mut sent) = mock_cluster_with(&pipeline, 3, &files).await;
    assert_eq!(sent, 10_000);

    let lake = TestLake::local();
    let settings = SinkSettings {
        mysql_url: Some(project.mysql_url.clone()),
        brokers: None,
        ..Default::default()
    };
    async fn run(pipeline: &StreamPipeline, lake: &Lake, bootstrap: &str, settings: &SinkSettings) -> RunReport {
        let input = Input::Kafka(Box::new(
            tokio::task::block_in_place(|| KafkaInput::connect(pipeline, bootstrap)).unwrap(),
        ));
        let mut engine = Engine::open(pipeline, lake, input, settings.clone()).await.unwrap();
        let options = RunOptions {
            until_caught_up: true,
            ..Default::default()
        };
        engine.run(&options).await.unwrap()
    }

    // Fetches fail with retriable errors, and partition leaders move, while the run reads.
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 4];
    cluster.request_errors(RDKafkaApiKey::Fetch, &errors);
    for source in &pipeline.sources {
        cluster.partition_leader(&source.topic, 0, Some(2)).unwrap();
        cluster.partition_leader(&source.topic, 1, Some(3)).unwrap();
    }
    let first = run(&pipeline, &lake.lake, &bootstrap, &settings).await;

    // A broker goes down for a moment during a second run.
    let more = input_files(&pipeline, 12_000, 3);
    let added = more
        .iter()
        .map(|(topic, contents)| (topic.clone(), contents[files[topic].len()..].to_vec()))
        .collect();
    sent += produce_files_to(&bootstrap, &pipeline, &added).await;
    crate::support::logged_warnings();
    cluster.broker_down(2).unwrap();
    let second = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(&pipeline, &lake.lake, &bootstrap, &settings))
        });
        // The run cannot read the partitions broker 2 leads: it retries, saying so with the
        // brokers' address, and waits for it instead of ending.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let retried = || {
            crate::support::logged_warnings()
                .iter()
                .any(|l| l.contains("retrying") && l.contains(bootstrap.as_str()))
        };
        while !retried() {
            assert!(std::time::Instant::now() < deadline, "no retry logged in 60 s");
            assert!(!running.is_finished(), "the second run ended before the fault");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running.is_finished(), "the run ended while broker 2 was down");
        cluster.broker_up(2).unwrap();
        running.join().unwrap()
    });

    assert_eq!(first.records + second.records, sent, "{first:?}\n{second:?}");
    assert_eq!(
        lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM bronze.clickstream")
            .await,
        "n|d\n9600|9600\n"
    );
    assert_eq!(
        lake.query("SELECT count(*) AS n, count(DISTINCT transaction_id) AS d FROM bronze.transactions")
            .await,
        "n|d\n2400|2400\n"
    );
    project.drop_database().await;
}
