//! Outages survived, through the binary, with events flowing: MariaDB stopped, the Kafka broker
//! stopped, the S3 server (MinIO) stopped, the lake's disk full, and the process killed again and
//! again. Each run ends with every event exactly once in bronze, gold and MySQL: the same tables
//! as an uninterrupted run over the same events. Outages last seconds here, not minutes: the
//! run's behaviour (retry with backoff, resume) is the same.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use quickchat_etl::ExitCode;
use quickchat_etl::kafka::ensure_topic;

use crate::live_ui::{get, sample, ui_address};
use crate::outage_support::{OWN_BUCKET, OwnServer, Running, SmallDisk, commits, wait_until};
use crate::stream_support::{
    StreamProject, assert_same, concat, input_files, mysql, mysql_rows_at, produce_files, produce_files_to, sentinels,
    stream_tables, write_files,
};
use crate::support::{TestLake, describe, exit, required_env, s3_env, unique_name};

const PIPELINE: &str = "clickstream-analytics";
/// The pipeline's MySQL tables.
const MYSQL_TABLES: [&str; 2] = ["page_views", "revenue"];
/// Records per micro-batch: many epochs, so that an outage falls in the middle of the run.
const MAX_RECORDS: usize = 400;
/// How long a server stays away.
const OUTAGE: Duration = Duration::from_secs(5);

/// What a run left: the lake's tables and the MySQL tables' rows.
struct Ended {
    tables: BTreeMap<String, String>,
    mysql: Vec<Vec<String>>,
}

impl Ended {
    async fn read(lake: &TestLake, mysql_url: &str) -> Self {
        let mut mysql = Vec::new();
        for table in MYSQL_TABLES {
            mysql.push(mysql_rows_at(mysql_url, &format!("SELECT * FROM {table}")).await);
        }
        Self {
            tables: stream_tables(lake).await,
            mysql,
        }
    }

    fn assert_same_as(&self, expected: &Ended, context: &str) {
        assert_same(&expected.tables, &self.tables, context);
        assert!(self.mysql[0].len() > 10, "{context}: MySQL holds the windows");
        assert_eq!(self.mysql, expected.mysql, "{context}: the MySQL tables");
    }
}

/// Generated events and the sentinels that close every window, written as files: the folder.
fn input_dir(project: &StreamProject, events: u64, seed: u64) -> tempfile::TempDir {
    let pipeline = project.pipeline(PIPELINE);
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &concat(input_files(&pipeline, events, seed), &sentinels(&pipeline)),
    );
    dir
}

/// One uninterrupted run of `project` over the files in `dir`, into a lake and a database of
/// its own.
async fn reference(project: &StreamProject, dir: &str) -> Ended {
    let server = required_env("QUICKCHAT_TEST_MYSQL_URL");
    let database = unique_name("quickchat_reference");
    mysql(&server)
        .await
        .query_drop(format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let url = format!("{}/{database}", server.trim_end_matches('/'));
    let lake = TestLake::local();
    let output = project
        .command(&lake, &["run", PIPELINE, "--from-files", dir])
        .env("MYSQL_URL", &url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let ended = Ended::read(&lake, &url).await;
    mysql(&server)
        .await
        .query_drop(format!("DROP DATABASE {database}"))
        .await
        .unwrap();
    ended
}

/// A database on our own MariaDB: its URL.
async fn database_on(server: &OwnServer, name: &str) -> String {
    let url = format!("mysql://quickchat:quickchat@{}", server.address());
    mysql(&url)
        .await
        .query_drop(format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    format!("{url}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_stopped_mid_run_is_waited_for_then_gives_up_past_the_bound_and_resumes_once() {
    let project = StreamProject::new(MAX_RECORDS).await;
    let input = input_dir(&project, 12_000, 21);
    let dir = input.path().to_str().unwrap();
    let expected = reference(&project, dir).await;
    let server = OwnServer::start_new("mariadb");

    // Stopped in the middle of a run: the run waits, retrying, and goes on once it is back.
    let url = database_on(&server, "waited").await;
    let lake = TestLake::local();
    let mut command = project.command(
        &lake,
        &[
            "run",
            PIPELINE,
            "--from-files",
            dir,
            "--retry-for",
            "2m",
            "--ui",
            "127.0.0.1:0",
        ],
    );
    command
        .env("MYSQL_URL", &url)
        .env("QUICKCHAT_LOG", "warn,quickchat_etl::commands=info");
    let mut run = Running::spawn(command);
    let ui = ui_address(&mut run).await;
    wait_until("three epochs", || commits(&lake.root_arg, PIPELINE, "files") >= 3).await;
    server.stop();
    let retry = run
        .wait_for_line("a retry of the MySQL sink", |l| l.contains("failed; retrying"))
        .await;
    assert!(retry.contains("mysql:") && retry.contains(&server.address()), "{retry}");
    let (_, metrics) = get(&ui, "/metrics", None);
    assert!(
        sample(
            &metrics,
            "quickchat_retries_total{error=\"sink\",operation=\"sink_write\"}"
        ) >= 1.0,
        "the retry counted by operation and kind:\n{metrics}"
    );
    tokio::time::sleep(OUTAGE).await;
    server.start();
    run.finish_ok();
    Ended::read(&lake, &url)
        .await
        .assert_same_as(&expected, "MySQL stopped mid-run");

    // Away for longer than --retry-for: exit 4 with the cause; a restart resumes exactly once.
    let url = database_on(&server, "given_up").await;
    let lake = TestLake::local();
    server.stop();
    let output = project
        .command(&lake, &["run", PIPELINE, "--from-files", dir, "--retry-for", "2s"])
        .env("MYSQL_URL", &url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), exit(ExitCode::JobFailed));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gave up after") && stderr.contains("--retry-for 2s") && stderr.contains(&server.address()),
        "{stderr}"
    );
    server.start();
    let output = project
        .command(&lake, &["run", PIPELINE, "--from-files", dir])
        .env("MYSQL_URL", &url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    Ended::read(&lake, &url)
        .await
        .assert_same_as(&expected, "MySQL away past --retry-for, then restarted");
    project.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_broker_stopped_mid_run_is_waited_for_and_nothing_is_lost_or_doubled() {
    let project = StreamProject::new(MAX_RECORDS).await;
    let pipeline = project.pipeline(PIPELINE);
    let input = input_dir(&project, 12_000, 22);
    let expected = reference(&project, input.path().to_str().unwrap()).await;

    let broker = OwnServer::start_new("kafka");
    let brokers = broker.address();
    for source in &pipeline.sources {
        ensure_topic(&brokers, &source.topic, 3).await.unwrap();
    }
    produce_files_to(&brokers, &pipeline, &input_files(&pipeline, 12_000, 22)).await;
    let lake = TestLake::local();
    let run_args = ["run", PIPELINE, "--until-caught-up", "--retry-for", "2m"];
    let mut command = project.command(&lake, &run_args);
    command.env("KAFKA_BOOTSTRAP_SERVERS", &brokers);
    let run = Running::spawn(command);
    wait_until("three epochs", || commits(&lake.root_arg, PIPELINE, "kafka") >= 3).await;
    let before = commits(&lake.root_arg, PIPELINE, "kafka");
    broker.stop();
    tokio::time::sleep(OUTAGE).await;
    broker.start();
    let stderr = run.finish_ok();
    assert!(
        stderr.lines().any(|l| l.contains("retrying") && l.contains(&brokers)),
        "each retry is logged with the address: {stderr}"
    );
    assert!(
        commits(&lake.root_arg, PIPELINE, "kafka") > before,
        "the run went on after the broker came back"
    );
    // Then the sentinels that close every window.
    produce_files_to(&brokers, &pipeline, &sentinels(&pipeline)).await;
    let mut command = project.command(&lake, &run_args);
    command.env("KAFKA_BOOTSTRAP_SERVERS", &brokers);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    Ended::read(&lake, &project.mysql_url)
        .await
        .assert_same_as(&expected, "Kafka broker stopped mid-run");
    project.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_stopped_mid_run_is_waited_for_and_readers_see_whole_commits() {
    let project = StreamProject::new(MAX_RECORDS).await;
    let input = input_dir(&project, 8_000, 23);
    let dir = input.path().to_str().unwrap();
    let expected = reference(&project, dir).await;

    let server = OwnServer::start_new("s3");
    let endpoint = format!("http://{}", server.address());
    let lake = TestLake::s3_at(&endpoint, OWN_BUCKET);
    let mut command = project.command(&lake, &["run", PIPELINE, "--from-files", dir, "--retry-for", "2m"]);
    command.envs(s3_env(&endpoint));
    let mut run = Running::spawn(command);
    let checkpoint = quickchat_etl::stream::checkpoint::Checkpoints::new(&lake.lake, PIPELINE, "files").unwrap();
    let started = std::time::Instant::now();
    while checkpoint.last_commit().await.unwrap().map_or(0, |c| c.epoch) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "three epochs:\n{}",
            run.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop();
    let retry = run
        .wait_for_line("a retry while S3 is away", |l| l.contains("retrying"))
        .await;
    // The object's URL, with the bucket and the table's path.
    assert!(retry.contains(lake.root_arg.trim_start_matches("s3://")), "{retry}");
    tokio::time::sleep(OUTAGE).await;
    server.start();
    run.finish_ok();
    Ended::read(&lake, &project.mysql_url)
        .await
        .assert_same_as(&expected, "S3 stopped mid-run");
    project.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_names_the_path_commits_nothing_half_and_the_run_resumes_once_space_is_freed() {
    let Some(disk) = SmallDisk::mount(256) else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let project = StreamProject::new(MAX_RECORDS).await;
    let input = input_dir(&project, 12_000, 24);
    let dir = input.path().to_str().unwrap();
    let expected = reference(&project, dir).await;

    let lake = TestLake::at(&disk.path().join("lake"));
    let lake_arg = lake.root_arg.clone();
    let mut run = Running::spawn(project.command(&lake, &["run", PIPELINE, "--from-files", dir, "--retry-for", "2m"]));
    wait_until("three epochs", || commits(&lake_arg, PIPELINE, "files") >= 3).await;
    let filler = disk.fill();
    let full = run
        .wait_for_line("a write failing on the full disk", |l| l.contains("retrying"))
        .await;
    assert!(full.contains("No space left on device"), "{full}");
    assert!(full.contains(&lake_arg), "the line names the path: {full}");
    std::fs::remove_file(filler).unwrap();
    run.finish_ok();
    Ended::read(&lake, &project.mysql_url)
        .await
        .assert_same_as(&expected, "the lake's disk full mid-run");
    project.drop_database().await;
}

/// Killed at random moments of a Kafka run (`QUICKCHAT_TEST_KILLS` times, 10 unless set; the
/// README's figure is of 50), then caught up: the same tables as one uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_random_moments_again_and_again_ends_with_every_event_once() {
    let kills: u32 = std::env::var("QUICKCHAT_TEST_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let project = StreamProject::new(MAX_RECORDS).await;
    project.set_setting("snapshot_interval", "\"1s\"");
    let pipeline = project.pipeline(PIPELINE);
    let events = 4_000 + 1_000 * u64::from(kills);
    let input = input_dir(&project, events, 25);
    let expected = reference(&project, input.path().to_str().unwrap()).await;
    project.create_topics(&pipeline).await;
    produce_files(&pipeline, &input_files(&pipeline, events, 25)).await;

    let lake = TestLake::local();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..kills {
        let run = Running::spawn(project.command(&lake, &["run", PIPELINE]));
        // A moment between 0.2 s and 2 s into the run (xorshift: no crate for a random number).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(200 + seed % 1_800)).await;
        run.kill();
    }
    project.run_ok(&lake, &["run", PIPELINE, "--until-caught-up"]);
    produce_files(&pipeline, &sentinels(&pipeline)).await;
    project.run_ok(&lake, &["run", PIPELINE, "--until-caught-up"]);
    Ended::read(&lake, &project.mysql_url)
        .await
        .assert_same_as(&expected, &format!("killed {kills} times"));
    project.drop_database().await;
}
