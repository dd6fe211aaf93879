//! Shared test helpers: temporary lakes (local or S3), the project's registry, running jobs
//! in-process, the real binary, and table dumps that ignore what legitimately differs between
//! runs (run ids, ingestion times, temporary paths).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use quickchat_etl::catalog::{Lake, TableName};
use quickchat_etl::config::{LakeLocation, Vars};
use quickchat_etl::generate::{DataSetSpec, write_to_url};
use quickchat_etl::jobs::Registry;
use quickchat_etl::jobs::graph::plan_target;
use quickchat_etl::jobs::runner::{JobReport, RunContext, run_jobs};
use quickchat_etl::progress::Progress;
use quickchat_etl::project::{Project, ProjectLocation};
use quickchat_etl::query::DateRange;
use quickchat_etl::repl::exec::lake_session;

/// A port nobody listens on, with the next two free too (a Kafka of a test's own listens on all
/// three: broker, controller, SASL_SSL; a port handed to another test must not be one of them),
/// taken *below* the kernel's ephemeral range (32768 and up on Linux): a port from that range
/// can be taken by any client's outgoing connection while a test's server is down, and the
/// server then fails to start again on it. Each call in this process tries the next port of a
/// range starting at a place of its own (from the process id), so parallel tests and parallel
/// test processes do not race for the same one.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    const PORTS: u32 = 3;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    loop {
        let port = (FIRST + (start + NEXT.fetch_add(PORTS, Ordering::Relaxed)) % COUNT) as u16;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if (port..port + PORTS as u16).all(free) {
            return port;
        }
    }
}

/// Warnings and errors logged in this test process, one line each (a subscriber capturing them
/// is installed on the first call): what a test waits for when the event it needs is a retry.
pub fn logged_warnings() -> Vec<String> {
    use std::sync::{Mutex, OnceLock};
    static LINES: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct Capture(&'static Mutex<Vec<u8>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Capture(lines))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        lines
    });
    String::from_utf8_lossy(&lines.lock().unwrap())
        .lines()
        .map(str::to_string)
        .collect()
}

/// The status code a process ends with for `code`.
pub fn exit(code: quickchat_etl::ExitCode) -> Option<i32> {
    Some(i32::from(code.code()))
}

/// The data set the golden files were made from.
pub fn golden_spec() -> DataSetSpec {
    DataSetSpec {
        seed: 7,
        users: 24,
        days: 8,
        start_date: NaiveDate::from_ymd_opt(2024, 3, 4).unwrap(),
    }
}

/// The repository root (pipelines/, sql/, tests/). Read when the test runs (`cargo test` sets it),
/// not only when it was compiled: a test binary built from another clone sharing the target
/// folder would otherwise look for that clone's files.
pub fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
}

/// The repository's jobs, with default variables.
pub fn registry() -> Registry {
    Registry::load(&Project::new(ProjectLocation::Folder(repo_root())), &Vars::default())
        .expect("the project's pipelines load")
}

/// A unique name for this process and call, for databases, buckets and prefixes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A lake for one test: a temporary folder, or a prefix in an S3 bucket.
pub struct TestLake {
    /// Keeps the temporary folder alive.
    _dir: tempfile::TempDir,
    /// The lake.
    pub lake: Lake,
    /// The lake root as given to the CLI (`--lake`).
    pub root_arg: String,
}

impl TestLake {
    /// A lake in a new temporary folder.
    pub fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let root_arg = root.display().to_string();
        let lake = Lake::new(LakeLocation::parse(&root_arg, HashMap::new()).unwrap());
        Self {
            _dir: dir,
            lake,
            root_arg,
        }
    }

    /// A lake in the local folder `root` (which the caller removes).
    pub fn at(root: &Path) -> Self {
        let root_arg = root.display().to_string();
        Self {
            _dir: tempfile::tempdir().unwrap(),
            lake: Lake::new(LakeLocation::parse(&root_arg, HashMap::new()).unwrap()),
            root_arg,
        }
    }

    /// A lake under a fresh prefix of the test bucket on the S3 server the test script
    /// started; fails with instructions when it did not.
    pub fn s3() -> Self {
        Self::s3_at(
            &required_env("QUICKCHAT_TEST_S3_ENDPOINT"),
            &required_env("QUICKCHAT_TEST_S3_BUCKET"),
        )
    }

    /// A lake under a fresh prefix of `bucket` on the S3 server at `endpoint`, reached with the
    /// test script's credentials.
    pub fn s3_at(endpoint: &str, bucket: &str) -> Self {
        let mut options: HashMap<String, String> = s3_env(endpoint)
            .into_iter()
            .map(|(name, value)| (name.to_lowercase(), value))
            .collect();
        options.insert("aws_allow_http".to_string(), "true".to_string());
        let root_arg = format!("s3://{bucket}/{}/lake", unique_name("it"));
        let lake = Lake::new(LakeLocation::parse(&root_arg, options).unwrap());
        Self {
            _dir: tempfile::tempdir().unwrap(),
            lake,
            root_arg,
        }
    }

    /// Writes the sample data set into `<lake>/landing/`.
    pub async fn generate(&self, spec: &DataSetSpec) {
        let landing = self.lake.location().resolve_folder("landing").unwrap();
        write_to_url(&self.lake, &landing, spec).await.unwrap();
    }

    /// Runs a job or group in-process and returns the reports (without asserting success).
    pub async fn run(
        &self,
        registry: &Registry,
        target: &str,
        range: DateRange,
        servers: Servers<'_>,
    ) -> Vec<JobReport> {
        let jobs = plan_target(registry, target, false).unwrap();
        let progress = Progress::hidden();
        let cx = RunContext {
            lake: &self.lake,
            registry,
            mysql_url: servers.mysql_url,
            mongodb: servers.mongodb,
            progress: &progress,
            observer: None,
        };
        run_jobs(cx, &jobs, range).await
    }

    /// Runs a job or group in-process and fails the test if any job failed.
    pub async fn run_ok(&self, registry: &Registry, target: &str, range: DateRange) {
        for report in self.run(registry, target, range, Servers::default()).await {
            if let Err(e) = &report.outcome {
                panic!("job {} failed: {e}", report.job);
            }
        }
    }

    /// Every table of the lake but the run log, dumped (see [`dump_batches`]).
    pub async fn dump_all(&self) -> BTreeMap<String, String> {
        let ctx = lake_session(&self.lake).await.unwrap();
        let mut dumps = BTreeMap::new();
        for table in self.lake.list_tables().await.unwrap() {
            if table == TableName::meta("run_log") {
                continue;
            }
            let batches = ctx
                .sql(&format!("SELECT * FROM {table}"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            dumps.insert(table.to_string(), dump_batches(&batches, &self.root_arg));
        }
        dumps
    }

    /// The result of a query, dumped.
    pub async fn query(&self, sql: &str) -> String {
        let ctx = lake_session(&self.lake).await.unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        dump_batches(&batches, &self.root_arg)
    }
}

/// An environment variable the test script sets; a clear failure when it is missing.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts MariaDB, the S3 server and Kafka")
    })
}

/// The servers an in-process run reads besides the lake (none by default: the export files).
#[derive(Default, Clone, Copy)]
pub struct Servers<'a> {
    pub mysql_url: Option<&'a str>,
    pub mongodb: Option<&'a quickchat_etl::config::MongoSettings>,
}

/// The environment that points the binary at the S3 server at `endpoint` with the test
/// script's credentials.
pub fn s3_env(endpoint: &str) -> [(&'static str, String); 4] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", required_env("QUICKCHAT_TEST_S3_ACCESS_KEY_ID")),
        (
            "AWS_SECRET_ACCESS_KEY",
            required_env("QUICKCHAT_TEST_S3_SECRET_ACCESS_KEY"),
        ),
    ]
}

/// Columns that differ between runs by design.
const VOLATILE: &[&str] = &["_ingested_at", "_run_id", "run_id", "quarantined_at"];

/// Batches as CSV-like text: a header, then rows sorted, volatile columns left out, the lake
/// root replaced by `<lake>`, and volatile keys removed from quarantined JSON records.
pub fn dump_batches(batches: &[RecordBatch], lake_root: &str) -> String {
    let Some(first) = batches.first() else {
        return String::new();
    };
    let schema = first.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !VOLATILE.contains(&schema.field(i).name().as_str()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows: Vec<String> = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = keep
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| normalize_cell(&f.value(row).to_string(), lake_root))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    let header: Vec<&str> = keep.iter().map(|&i| schema.field(i).name().as_str()).collect();
    format!("{}\n{}\n", header.join("|"), rows.join("\n"))
}

fn normalize_cell(cell: &str, lake_root: &str) -> String {
    let local_root = lake_root.trim_start_matches("file://");
    let cell = cell.replace(local_root, "<lake>");
    match serde_json::from_str::<serde_json::Value>(&cell) {
        Ok(serde_json::Value::Object(mut object)) => {
            for key in VOLATILE {
                object.remove(*key);
            }
            serde_json::Value::Object(object).to_string()
        }
        _ => cell,
    }
}

/// Fails with the first differing table and line when two sets of dumps differ.
pub fn assert_same_tables(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>, context: &str) {
    let names = |d: &BTreeMap<String, String>| d.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(expected), names(actual), "{context}: different tables");
    for (table, want) in expected {
        let got = &actual[table];
        if want != got {
            panic!("{context}: {table} differs: {}", first_difference(want, got));
        }
    }
}

fn first_difference(expected: &str, actual: &str) -> String {
    expected
        .lines()
        .zip(actual.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(n, (a, b))| format!("line {}:\n  expected: {a}\n  actual:   {b}", n + 1))
        .unwrap_or_else(|| {
            format!(
                "{} lines expected, {} produced",
                expected.lines().count(),
                actual.lines().count()
            )
        })
}

/// Compares dumps with the checked-in files under `tests/golden/`, or rewrites them when
/// `UPDATE_GOLDEN=1`.
pub fn assert_golden(dumps: &BTreeMap<String, String>) {
    assert_golden_in("tests/golden", dumps);
}

/// Compares dumps with the checked-in files of a folder of the repository (one `<table>.txt`
/// each), or rewrites them when `UPDATE_GOLDEN=1`.
pub fn assert_golden_in(folder: &str, dumps: &BTreeMap<String, String>) {
    let folder = repo_root().join(folder);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&folder).unwrap();
        for (table, dump) in dumps {
            std::fs::write(folder.join(format!("{table}.txt")), dump).unwrap();
        }
        return;
    }
    let expected_tables: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".txt").map(String::from))
        .collect();
    let mut missing: Vec<&String> = expected_tables.iter().filter(|t| !dumps.contains_key(*t)).collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "tables with golden files were not produced: {missing:?}"
    );
    for (table, dump) in dumps {
        let path = folder.join(format!("{table}.txt"));
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "no golden file {} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        if &expected != dump {
            panic!(
                "{table} differs from {}: {}",
                path.display(),
                first_difference(&expected, dump)
            );
        }
    }
}

/// The `quickchat-etl` binary under test, run with `args` in `dir`.
pub fn binary(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quickchat-etl"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATA_LAKE_PATH")
        .env_remove("MYSQL_URL")
        .env_remove("MONGODB_URI")
        .env_remove("QUICKCHAT_PROJECT")
        .env("QUICKCHAT_LOG", "info")
        .output()
        .expect("the binary runs")
}

/// `generate --users N --days D` into `dir/lake/landing`, where a run in `dir` reads it.
pub fn generate_landing(dir: &Path, users: u32, days: u32) {
    let landing = dir.join("lake/landing");
    let (users, days) = (users.to_string(), days.to_string());
    let generated = binary(
        dir,
        &[
            "generate",
            "--out",
            landing.to_str().unwrap(),
            "--users",
            &users,
            "--days",
            &days,
        ],
    );
    assert!(generated.status.success(), "{}", describe(&generated));
}

/// A MariaDB database of the test's own holding the golden data set's `users` table: an admin
/// connection, the database's URL, and its name (to drop).
pub async fn users_database(prefix: &str) -> (mysql_async::Conn, String, String) {
    use mysql_async::prelude::Queryable;
    let server = required_env("QUICKCHAT_TEST_MYSQL_URL");
    let database = unique_name(prefix);
    let mut admin = mysql_async::Conn::new(mysql_async::Opts::from_url(&server).unwrap())
        .await
        .unwrap();
    admin.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
    let url = format!("{}/{database}", server.trim_end_matches('/'));
    let users = quickchat_etl::generate::generate(&golden_spec()).users;
    quickchat_etl::generate::mysql::load_users(&url, &users).await.unwrap();
    (admin, url, database)
}

/// Standard output and error of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A copy of the project's pipelines/, sql/, proto/ and dashboards/ in a temporary folder, to break on purpose.
pub fn project_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["pipelines", "sql", "proto", "dashboards"] {
        copy_dir(&repo_root().join(folder), &dir.path().join(folder));
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
