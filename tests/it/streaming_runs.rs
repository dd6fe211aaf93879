//! How a streaming run starts and stops, through the binary: SIGTERM drains and exits 0, an
//! unreachable broker is named with how to start one, the generator feeds a pipeline with no
//! broker in the input path, alerts reach their Delta table and Kafka topic once each, and
//! checkpoint cleanup keeps what a restart needs.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use quickchat_etl::ExitCode;

use crate::stream_support::{StreamProject, brokers, concat, input_files, produce_files, sentinels, write_files};
use crate::support::{TestLake, describe, exit};

/// Messages in a topic (all partitions).
fn messages_in(topic: &str) -> i64 {
    let consumer: BaseConsumer = quickchat_etl::kafka::client_config(&brokers())
        .set("group.id", "quickchat-it-count")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    // Every record sent was acknowledged by the broker, so the offsets say how many there are.
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_micro_batch_in_progress_commit_and_exits_0() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline(name);
    project.create_topics(&pipeline).await;
    produce_files(&pipeline, &input_files(&pipeline, 5_000, 2)).await;
    let lake = TestLake::local();
    let child = project
        .command(&lake, &["run", name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let commits = std::path::Path::new(&lake.root_arg)
        .join("_checkpoints")
        .join(name)
        .join("kafka/commits");
    let started = Instant::now();
    while std::fs::read_dir(&commits).map(|d| d.count()).unwrap_or(0) < 5 && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("; stopped"), "{stdout}");
    // What it read is committed: a restart goes on from there and ends with every event once.
    let out = project.run_ok(&lake, &["run", name, "--until-caught-up"]);
    assert!(!out.contains("replayed"), "nothing was left half done: {out}");
    assert_eq!(
        lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM bronze.clickstream")
            .await,
        "n|d\n4000|4000\n"
    );
    project.drop_database().await;
}

/// State saved by one query cannot be folded into another's: a changed SQL file is refused with
/// the way out, until the checkpoint is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_changed_under_saved_state_is_refused_until_the_checkpoint_is_reset() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(1_000).await;
    // A snapshot at every epoch: without one the restart rebuilds state by replaying the log.
    project.set_setting("snapshot_interval", "\"0s\"");
    let pipeline = project.pipeline(name);
    project.create_topics(&pipeline).await;
    produce_files(&pipeline, &input_files(&pipeline, 3_000, 4)).await;
    let lake = TestLake::local();
    // Caught up with windows still open: their states are in the checkpoint.
    project.run_ok(&lake, &["run", name, "--until-caught-up"]);

    let sql = project.path().join("sql/streaming/clickstream/sessions.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    let changed = text.replace(
        "count(*) AS event_count,",
        "count(*) AS event_count, max(product_id) AS last_product,",
    );
    assert_ne!(text, changed);
    std::fs::write(&sql, changed).unwrap();
    let output = project.run(&lake, &["run", name, "--until-caught-up"]);
    // A state error: retrying cannot help, the checkpoint must be reset.
    assert_eq!(output.status.code(), exit(ExitCode::State), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sessions.sql"), "{stderr}");
    assert!(stderr.contains("state of output `sessions`"), "{stderr}");
    assert!(stderr.contains(&format!("checkpoints {name} --reset")), "{stderr}");

    project.run_ok(&lake, &["checkpoints", name, "--reset"]);
    project.run_ok(&lake, &["run", name, "--until-caught-up"]);
    project.drop_database().await;
}

#[test]
fn an_unreachable_broker_is_named_with_how_to_start_one() {
    let project = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(StreamProject::new(1_000));
    let lake = TestLake::local();
    let output = project.run(&lake, &["run", "chat-analytics", "--brokers", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), exit(ExitCode::JobFailed), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach Kafka at 127.0.0.1:1"), "{stderr}");
    assert!(stderr.contains("scripts/services.sh start"), "{stderr}");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(project.drop_database());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_feeds_a_pipeline_and_alerts_reach_delta_and_kafka_once() {
    let name = "interaction-analytics";
    let project = StreamProject::new(2_000).await;
    project.set_setting("snapshot_interval", "\"0s\"");
    let pipeline = project.pipeline(name);
    project.create_topics(&pipeline).await;
    let lake = TestLake::local();
    let out = project.run_ok(
        &lake,
        &["run", name, "--from-generator", "--rate", "8000", "--duration", "3s"],
    );
    assert!(out.contains("from generator"), "{out}");
    assert!(out.contains("24000 records"), "{out}");
    let alerts = lake
        .query("SELECT rule, count(*) AS n FROM gold.alerts GROUP BY rule")
        .await;
    assert!(
        alerts.contains("busy_item|") && alerts.contains("heavy_user|"),
        "{alerts}"
    );
    let total: i64 = lake
        .query("SELECT count(*) FROM gold.alerts")
        .await
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        messages_in(&project.topic("alerts")),
        total,
        "each alert once on the topic"
    );

    // The run kept its checkpoint small by itself (a snapshot every epoch here): the three latest
    // snapshots, and the commit logs from the oldest of them on.
    let listing = project.run_ok(&lake, &["checkpoints", name]);
    let (snapshots, commit_logs, last_commit) = checkpoint_listing(&listing);
    assert_eq!(snapshots.len(), 3, "keep_snapshots = 3 by default: {listing}");
    assert!(last_commit > 3, "older snapshots were saved, then removed: {listing}");
    assert_eq!(snapshots.last(), Some(&last_commit), "{listing}");
    assert_eq!(
        commit_logs as u64,
        last_commit - snapshots[0] + 1,
        "the commits only removed snapshots needed went: {listing}"
    );

    // Cleanup keeps the latest snapshot; the next run resumes from it and raises no alert twice.
    let listing = project.run_ok(&lake, &["checkpoints", name, "--cleanup", "--keep", "1"]);
    assert!(
        listing.contains("generator") && listing.contains("snapshots at epochs"),
        "{listing}"
    );
    let out = project.run_ok(
        &lake,
        &["run", name, "--from-generator", "--rate", "8000", "--duration", "4s"],
    );
    assert!(
        out.contains(" 8000 records"),
        "the second run goes on where the first ended: {out}"
    );
    let again = lake
        .query("SELECT rule, alert_key, count(*) AS n FROM gold.alerts GROUP BY 1, 2 HAVING count(*) > 1")
        .await;
    assert_eq!(again, "", "no alert raised twice: {again}");

    let reset = project.run_ok(&lake, &["checkpoints", name, "--reset"]);
    assert!(reset.contains("reset: removed"), "{reset}");
    let none = project.run_ok(&lake, &["checkpoints", name]);
    assert!(none.contains("has no checkpoints"), "{none}");
    project.drop_database().await;
}

/// The snapshot epochs, commit log count and last committed epoch of a `checkpoints` listing's
/// generator line.
fn checkpoint_listing(listing: &str) -> (Vec<u64>, usize, u64) {
    let line = listing
        .lines()
        .find(|l| l.starts_with("generator"))
        .unwrap_or_else(|| panic!("{listing}"));
    let after = |marker: &str| {
        line.split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("{marker} in {line}"))
    };
    let last_commit = after("last committed epoch ")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let commit_logs = after(", ").split(' ').next().unwrap().parse().unwrap();
    let snapshots = after("snapshots at epochs ")
        .split(", ")
        .map(|e| e.trim().parse().unwrap())
        .collect();
    (snapshots, commit_logs, last_commit)
}

/// The figures table of `bench`: every part runs (small sizes), and the runs from files and from
/// Kafka read every event they were given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_every_part_and_reads_every_event() {
    let project = StreamProject::new(1_000).await;
    let lake = TestLake::local();
    let out = project.run_ok(
        &lake,
        &[
            "bench",
            "--events",
            "20000",
            "--kafka-events",
            "6000",
            "--freshness-rate",
            "500",
            "--freshness-duration",
            "3s",
            "--soak",
            "10s",
            "--soak-rate",
            "1000",
            "--commits",
            "30",
            "--batch-users",
            "30",
            "--batch-days",
            "3",
        ],
    );
    let row = |phase: &str| -> Vec<String> {
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no row {phase:?} in:\n{out}"));
        line[phase.len()..].split_whitespace().map(str::to_string).collect()
    };
    let events = |phase: &str| row(phase)[0].parse::<u64>().unwrap();
    assert_eq!(events("files: decode+dedup+4 windows"), 20_000, "{out}");
    assert_eq!(events("files: same, without the join"), 20_000, "{out}");
    assert_eq!(events("files: + Delta sinks"), 20_000, "{out}");
    let produced = events("kafka: producer (acks=all)");
    assert_eq!(produced, 6_000, "{out}");
    assert_eq!(events("kafka: bare rdkafka consumer"), produced, "{out}");
    assert_eq!(events("kafka: pipeline, no sinks"), produced, "{out}");
    assert_eq!(events("kafka: pipeline + sinks"), produced, "{out}");
    assert!(events("kafka: freshness, update mode") > 0, "{out}");
    assert!(events("generator: soak") > 0, "{out}");
    assert_eq!(events("commits: append table"), 30, "{out}");
    assert_eq!(events("commits: update table"), 30, "{out}");
    assert!(
        events("batch: full pipeline, 30 users x 3 days") > 100,
        "messages read: {out}"
    );
    assert_eq!(events("ui: off"), 20_000, "{out}");
    assert_eq!(events("ui: on, polled"), 20_000, "{out}");
    // `ui: on, polled: ... ms, N requests, every endpoint each 500 ms + M from Chromium ...`
    let watched = out
        .lines()
        .find(|l| l.starts_with("ui: on, polled: "))
        .unwrap_or_else(|| panic!("the UI's requests counted: {out}"));
    let count_before = |marker: &str| -> Option<u64> {
        let before = &watched[..watched.find(marker)?];
        before.rsplit(' ').next()?.parse().ok()
    };
    assert!(
        count_before(" requests,").is_some_and(|n| n > 0),
        "the UI was polled while the stream ran: {watched}"
    );
    // The test machine has Chromium (scripts/install-deps.sh test): it showed the live page.
    assert!(
        count_before(" from Chromium").is_some_and(|n| n > 0),
        "Chromium showed the page: {watched}"
    );
    assert!(out.contains("ui: the UI on and polled runs at"), "{out}");
    let p99_ms: u64 = row("kafka: freshness, update mode")[4].parse().unwrap();
    assert!(p99_ms > 0, "freshness measured: {out}");
}

/// `maintain` on tables a stream wrote in small micro-batches: fewer files, the same rows, a
/// dry run that changes nothing, and a VACUUM retention under Delta's safety limit refused.
#[tokio::test]
async fn maintain_compacts_what_a_stream_wrote_and_every_read_stays_equal() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(500).await;
    let pipeline = project.pipeline(name);
    let files = input_files(&pipeline, 12_000, 5);
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &concat(files, &sentinels(&pipeline)));
    let lake = TestLake::local();
    project.run_ok(&lake, &["run", name, "--from-files", dir.path().to_str().unwrap()]);

    let tables = [
        (
            "bronze.clickstream",
            "SELECT count(*), count(DISTINCT event_id) FROM bronze.clickstream",
        ),
        (
            "gold.page_views",
            "SELECT count(*), sum(view_count), sum(unique_users), count(DISTINCT product_id) FROM gold.page_views",
        ),
        (
            "gold.conversions",
            "SELECT count(*), sum(clicks), sum(purchases) FROM gold.conversions",
        ),
    ];
    let mut before = Vec::new();
    for (_, sql) in &tables {
        before.push(lake.query(sql).await);
    }
    let files_of = |listing: &str, table: &str| -> String {
        let line = listing
            .lines()
            .find(|l| l.starts_with(table))
            .unwrap_or_else(|| panic!("{table} in:\n{listing}"));
        line.split_whitespace().nth(2).unwrap().to_string()
    };

    let dry = project.run_ok(&lake, &["maintain", "--dry-run"]);
    for (table, _) in &tables {
        assert!(
            !files_of(&dry, table).contains('→'),
            "a dry run changes nothing:\n{dry}"
        );
    }
    let refused = project.run(&lake, &["maintain", "bronze", "--vacuum", "--retain", "1h"]);
    assert_eq!(
        refused.status.code(),
        Some(ExitCode::Usage as i32),
        "{}",
        describe(&refused)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "{}",
        describe(&refused)
    );

    let done = project.run_ok(&lake, &["maintain"]);
    // Bronze got a file per micro-batch; gold windows closed only at the end of the input.
    for table in ["bronze.clickstream", "bronze.transactions"] {
        let files = files_of(&done, table);
        let (from, to) = files
            .split_once('→')
            .unwrap_or_else(|| panic!("{table} compacted:\n{done}"));
        assert!(
            to.parse::<u64>().unwrap() < from.parse::<u64>().unwrap(),
            "{table}:\n{done}"
        );
    }
    for ((table, sql), before) in tables.iter().zip(&before) {
        assert_eq!(&lake.query(sql).await, before, "{table} reads the same after maintain");
    }
    let zordered = project.run_ok(
        &lake,
        &["maintain", "bronze.clickstream", "--optimize", "--zorder-by", "user_id"],
    );
    assert!(zordered.contains("z-order by user_id"), "{zordered}");
    assert_eq!(
        lake.query(tables[0].1).await,
        before[0],
        "bronze reads the same after a Z-order"
    );
    let logged = lake
        .query("SELECT count(*) FROM meta.run_log WHERE job LIKE 'maintain %' AND status = 'succeeded'")
        .await;
    assert!(!logged.contains("\n0"), "{logged}");
}

/// `[limits]`: a record over `max_record_bytes` is quarantined with its size, a micro-batch
/// ends at `max_batch_bytes`, and an operator holding more than `max_state_rows` stops the run
/// (exit 4) naming the output and the limit, before its epoch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_quarantine_a_huge_record_bound_micro_batch_bytes_and_stop_a_runaway_state() {
    let name = "clickstream-analytics";
    let project = StreamProject::new(100_000).await;
    let pipeline = project.pipeline(name);
    let mut files = concat(input_files(&pipeline, 4_000, 8), &sentinels(&pipeline));
    let huge = format!(
        "{{\"event_id\":\"huge\",\"user_id\":\"u\",\"timestamp\":\"2024-01-01T00:00:01Z\",\"pad\":\"{}\"}}\n",
        "x".repeat(2 << 20)
    );
    files
        .get_mut(&project.topic("clickstream"))
        .unwrap()
        .extend_from_slice(huge.as_bytes());
    let input_bytes: usize = files.values().map(Vec::len).sum::<usize>() - huge.len();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &files);
    let dir_arg = dir.path().to_str().unwrap();
    let pipeline_file = project.path().join(format!("pipelines/{name}.toml"));
    let original = std::fs::read_to_string(&pipeline_file).unwrap();
    let limit = |lines: &str| std::fs::write(&pipeline_file, format!("{original}\n[limits]\n{lines}\n")).unwrap();

    limit("max_batch_bytes = \"64KiB\"");
    let lake = TestLake::local();
    let out = project.run_ok(&lake, &["run", name, "--from-files", dir_arg]);
    assert!(out.contains("quarantined 1"), "{out}");
    let epochs: usize = out
        .split(" epoch(s)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no epoch count in {out}"));
    assert!(
        epochs > input_bytes / 65_536,
        "{epochs} micro-batches of at most 64 KiB for {input_bytes} bytes"
    );
    let reason = lake.query("SELECT reason FROM meta.quarantine").await;
    assert!(
        reason.contains("a record of 2.0 MiB is larger than limits.max_record_bytes (1.0 MiB)"),
        "{reason}"
    );

    limit("max_batch_bytes = \"64KiB\"\nmax_state_rows = 50");
    let output = project.run(&TestLake::local(), &["run", name, "--from-files", dir_arg]);
    assert_eq!(output.status.code(), exit(ExitCode::JobFailed), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("more than limits.max_state_rows (50)") && stderr.contains("output `"),
        "{stderr}"
    );
    project.drop_database().await;
}
