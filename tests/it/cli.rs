//! CLI tests: the real `quickchat-etl` binary, its output formats and its exit codes (which an
//! Airflow BashOperator acts on).

use quickchat_etl::ExitCode;

use crate::support::{binary, describe, exit, generate_landing, project_copy, repo_root};

const JOBS: [&str; 11] = [
    "bronze-calls",
    "bronze-conversations",
    "bronze-messages",
    "bronze-users",
    "silver-users",
    "silver-messages",
    "silver-user-activity",
    "gold-daily-metrics",
    "gold-ml-features",
    "gold-user-engagement",
    "export-ml-features",
];

const STREAMS: [&str; 3] = ["chat-analytics", "clickstream-analytics", "interaction-analytics"];

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn demo_runs_anywhere_with_the_built_in_pipelines_and_sql_answers_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let demo = binary(dir.path(), &["demo", "--users", "12", "--days", "3"]);
    assert!(demo.status.success(), "{}", describe(&demo));
    assert!(
        stdout(&demo).contains("dau") && stdout(&demo).contains("segment"),
        "{}",
        describe(&demo)
    );
    assert!(dir.path().join("lake/gold/daily_metrics/_delta_log").is_dir());

    let count = "SELECT count(*) AS days FROM gold.daily_metrics";
    let csv = binary(dir.path(), &["sql", "-e", count, "--format", "csv"]);
    assert_eq!(stdout(&csv), "days\n3\n", "{}", describe(&csv));
    let json = binary(dir.path(), &["sql", "-e", count, "--format", "json"]);
    assert_eq!(stdout(&json).trim(), r#"{"days":3}"#, "{}", describe(&json));
    let table = binary(dir.path(), &["sql", "-e", count]);
    assert!(
        stdout(&table).contains("| days |") && stdout(&table).contains("| 3    |"),
        "{}",
        describe(&table)
    );

    std::fs::write(
        dir.path().join("two.sql"),
        "SELECT count(*) AS layers FROM information_schema.schemata WHERE schema_name IN ('bronze', 'silver', 'gold', 'meta');\n\
         SELECT count(*) AS runs FROM meta.run_log WHERE status = 'succeeded';\n",
    )
    .unwrap();
    let file = binary(dir.path(), &["sql", "-f", "two.sql", "--format", "csv"]);
    assert_eq!(stdout(&file), "layers\n4\nruns\n11\n", "{}", describe(&file));

    let bad = binary(
        dir.path(),
        &["sql", "-e", "SELECT no_such_column FROM gold.daily_metrics"],
    );
    assert_eq!(bad.status.code(), exit(ExitCode::JobFailed), "{}", describe(&bad));
    assert!(stderr(&bad).contains("no_such_column"), "{}", describe(&bad));
}

#[test]
fn list_shows_every_job_with_its_layer_sources_sink_and_sql_file() {
    let table = binary(&repo_root(), &["list"]);
    assert!(table.status.success(), "{}", describe(&table));
    for job in JOBS {
        assert!(stdout(&table).contains(job), "{job} missing:\n{}", describe(&table));
    }
    let json = binary(&repo_root(), &["list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), JOBS.len() + STREAMS.len());
    for stream in STREAMS {
        let row = rows.iter().find(|r| r["job"] == stream).unwrap();
        assert_eq!(row["layer"], "streaming", "{row}");
    }
    let messages = rows.iter().find(|r| r["job"] == "silver-messages").unwrap();
    assert_eq!(messages["layer"], "silver");
    assert_eq!(messages["sources"], "bronze.messages, silver.users");
    assert_eq!(messages["sink"], "silver.messages");
    assert_eq!(messages["sql"], "sql/silver/messages.sql");
}

#[test]
fn the_airflow_manifest_is_the_job_graph_the_binary_lists() {
    let listed = binary(&repo_root(), &["list", "--format", "json"]);
    assert!(listed.status.success(), "{}", describe(&listed));
    let manifest = std::fs::read_to_string(repo_root().join("pipelines/airflow/jobs.json")).unwrap();
    assert_eq!(
        manifest,
        stdout(&listed),
        "pipelines/airflow/jobs.json is out of date: run `quickchat-etl list --format json > pipelines/airflow/jobs.json`"
    );
}

/// A real Airflow (the virtual environment scripts/install-deps.sh makes) loads the DAG folder
/// as its DAG processor would: no quickchat-etl binary on PATH, nothing run at import time.
#[test]
fn airflow_loads_the_dag_with_one_task_per_job_wired_like_the_job_graph() {
    let python = std::env::var("QUICKCHAT_TEST_AIRFLOW_PYTHON")
        .expect("QUICKCHAT_TEST_AIRFLOW_PYTHON: run the tests with scripts/test.sh, which installs Airflow");
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(python)
        .arg(repo_root().join("tests/airflow/check_dag.py"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("AIRFLOW_HOME", home.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        .current_dir(home.path())
        .output()
        .expect("the Airflow virtual environment's python runs");
    assert!(out.status.success(), "{}", describe(&out));
    let ok = format!("ok: {} job tasks and maintain_lake", JOBS.len());
    assert!(stdout(&out).lines().any(|l| l == ok), "{}", describe(&out));
}

#[test]
fn validate_passes_on_the_project_and_reports_every_problem_of_a_broken_one_with_file_names() {
    let ok = binary(&repo_root(), &["validate"]);
    assert!(ok.status.success(), "{}", describe(&ok));
    assert!(
        stdout(&ok).contains("11 jobs, 3 streaming pipelines and 5 dashboards valid"),
        "{}",
        describe(&ok)
    );

    let project = project_copy();
    let edit = |file: &str, from: &str, to: &str| {
        let path = project.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} does not contain {from:?}");
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "pipelines/export-ml-features.toml",
        "[sink]",
        "partition_on = [\"x\"]\n\n[sink]",
    );
    edit(
        "pipelines/gold-ml-features.toml",
        "\"bronze-conversations\"]",
        "\"bronze-conversations\", \"silver-msgs\"]",
    );
    edit(
        "sql/gold/daily_metrics.sql",
        "count(DISTINCT user_id)",
        "count(DISTINCT no_such_user_column)",
    );
    edit(
        "pipelines/gold-user-engagement.toml",
        "engagement_score BETWEEN 0 AND 100",
        "no_such_score > 0",
    );
    edit("dashboards/clickstream.toml", "y = [\"percent\"]", "y = [\"rate\"]");
    edit("dashboards/chat.toml", "kind = \"line\"", "kind = \"pie\"");

    let project_arg = project.path().to_str().unwrap();
    let broken = binary(&repo_root(), &["--project", project_arg, "validate"]);
    assert_eq!(broken.status.code(), exit(ExitCode::Config), "{}", describe(&broken));
    let text = stderr(&broken);
    assert!(
        text.contains("pipelines/export-ml-features.toml") && text.contains("partition_on"),
        "{text}"
    );
    assert!(
        text.contains("pipelines/gold-ml-features.toml") && text.contains("silver-msgs"),
        "{text}"
    );
    assert!(text.contains("did you mean `silver-messages`"), "{text}");
    assert!(
        text.contains("sql/gold/daily_metrics.sql") && text.contains("no_such_user_column"),
        "{text}"
    );
    assert!(
        text.contains("pipelines/gold-user-engagement.toml") && text.contains("no_such_score"),
        "{text}"
    );
    assert!(
        text.contains("dashboards/clickstream.toml")
            && text.contains("chart `conversion`")
            && text.contains("no column rate"),
        "{text}"
    );
    assert!(text.contains("dashboards/chat.toml") && text.contains("pie"), "{text}");
}

#[test]
fn usage_errors_exit_2_and_say_what_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = binary(dir.path(), &["run", "silver-user"]);
    assert_eq!(unknown.status.code(), exit(ExitCode::Usage), "{}", describe(&unknown));
    assert!(
        stderr(&unknown).contains("did you mean `silver-users`"),
        "{}",
        describe(&unknown)
    );

    let backwards = binary(
        dir.path(),
        &["run", "bronze-all", "--from", "2024-01-05", "--to", "2024-01-01"],
    );
    assert_eq!(
        backwards.status.code(),
        exit(ExitCode::Usage),
        "{}",
        describe(&backwards)
    );

    let bad_date = binary(dir.path(), &["run", "bronze-all", "--date", "2024-13-01"]);
    assert_eq!(bad_date.status.code(), exit(ExitCode::Usage), "{}", describe(&bad_date));

    let bad_limit = binary(dir.path(), &["--memory-limit", "4 parsecs", "list"]);
    assert_eq!(
        bad_limit.status.code(),
        exit(ExitCode::Usage),
        "{}",
        describe(&bad_limit)
    );
    assert!(stderr(&bad_limit).contains("unknown unit"), "{}", describe(&bad_limit));
}

#[test]
fn a_job_under_a_memory_limit_too_small_fails_naming_the_job_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 50, 2);
    let out = binary(
        dir.path(),
        &["--memory-limit", "64KiB", "run", "bronze-all", "--upstream"],
    );
    let out = if out.status.success() {
        binary(dir.path(), &["--memory-limit", "64KiB", "run", "full-pipeline"])
    } else {
        out
    };
    assert_eq!(out.status.code(), exit(ExitCode::JobFailed), "{}", describe(&out));
    assert!(
        stderr(&out).contains("hint: the run needs more memory than --memory-limit (64.0 KiB)"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_job_whose_input_table_is_missing_names_the_job_to_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary(dir.path(), &["run", "gold-daily-metrics"]);
    assert_eq!(out.status.code(), exit(ExitCode::JobFailed), "{}", describe(&out));
    assert!(
        stderr(&out).contains("run it first, or add --upstream"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_source_that_cannot_be_read_fails_its_job_naming_the_table_or_file() {
    let dir = tempfile::tempdir().unwrap();
    // Sources are read while the query runs; their failure, not the query's, is reported.
    let away = "mysql://quickchat:secret@127.0.0.1:1/quickchat";
    let out = binary(dir.path(), &["--mysql-url", away, "run", "bronze-users"]);
    assert_eq!(out.status.code(), exit(ExitCode::JobFailed), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1:1/quickchat table users"),
        "{}",
        describe(&out)
    );
    assert!(!err.contains("secret"), "{}", describe(&out));

    std::fs::create_dir_all(dir.path().join("lake/landing/mysql")).unwrap();
    std::fs::write(dir.path().join("lake/landing/mysql/users.csv"), "id,name\n1,a\n").unwrap();
    let out = binary(dir.path(), &["run", "bronze-users"]);
    assert_eq!(out.status.code(), exit(ExitCode::JobFailed), "{}", describe(&out));
    assert!(
        stderr(&out).contains("users.csv") && stderr(&out).contains("the header has no column `username`"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_failing_fail_expectation_exits_5_and_writes_nothing_but_the_evidence() {
    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 12, 3);
    let project = project_copy();
    let pipeline = project.path().join("pipelines/gold-daily-metrics.toml");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replace("total_messages >= 0 AND dau >= 0", "total_messages < 0"),
    )
    .unwrap();

    let project_arg = project.path().to_str().unwrap();
    let out = binary(
        dir.path(),
        &["--project", project_arg, "run", "gold-daily-metrics", "--upstream"],
    );
    assert_eq!(out.status.code(), exit(ExitCode::DataQuality), "{}", describe(&out));
    assert!(
        stderr(&out).contains("rule `messages_counted` violated by 3 row(s)"),
        "{}",
        describe(&out)
    );
    assert!(
        dir.path().join("lake/silver/user_activity/_delta_log").is_dir(),
        "upstream jobs ran"
    );
    assert!(
        !dir.path().join("lake/gold/daily_metrics/_delta_log").exists(),
        "the failed job wrote nothing"
    );

    let evidence = binary(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "-e",
            "SELECT status FROM meta.run_log WHERE job = 'gold-daily-metrics'",
            "-e",
            "SELECT count(*) AS rows FROM meta.quarantine WHERE rule = 'messages_counted'",
        ],
    );
    assert_eq!(
        stdout(&evidence),
        "status\nfailed\nrows\n3\n",
        "{}",
        describe(&evidence)
    );
}

#[test]
fn dry_run_shows_what_would_be_replaced_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = binary(
        dir.path(),
        &["run", "full-pipeline", "--dry-run", "--date", "2024-01-02"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    for job in JOBS {
        assert!(text.contains(job), "{job} missing:\n{text}");
    }
    assert!(
        text.contains("writes  bronze.messages (replace event_date = 2024-01-02)"),
        "{text}"
    );
    assert!(
        text.contains("writes  silver.users (replace the whole table)"),
        "{text}"
    );
    assert!(text.contains("expects message_id_present (drop)"), "{text}");
    assert!(!dir.path().join("lake").exists(), "a dry run created the lake");
}

#[test]
fn json_logs_are_one_object_per_line_with_the_job_figures() {
    let dir = tempfile::tempdir().unwrap();
    generate_landing(dir.path(), 12, 3);
    let out = binary(dir.path(), &["--log-format", "json", "run", "bronze-all"]);
    assert!(out.status.success(), "{}", describe(&out));
    let events: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished: Vec<&serde_json::Value> = events.iter().filter(|e| e["message"] == "job finished").collect();
    assert_eq!(finished.len(), 4, "{}", describe(&out));
    let messages = finished.iter().find(|e| e["job"] == "bronze-messages").unwrap();
    assert!(messages["rows_written"].as_u64().unwrap() > 100, "{messages}");
    assert!(
        messages["files_added"].as_u64().unwrap() >= 3,
        "one file per day at least: {messages}"
    );
    assert!(
        stdout(&out).contains("bronze-messages") && stdout(&out).contains("ok"),
        "{}",
        describe(&out)
    );
}

/// Drives the interactive shell in a tmux terminal: completion, `\\dt`, and Ctrl-C cancelling a
/// long query while the shell stays usable.
#[test]
fn the_sql_shell_completes_table_names_and_ctrl_c_cancels_the_query_not_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let demo = binary(dir.path(), &["demo", "--users", "8", "--days", "2"]);
    assert!(demo.status.success(), "{}", describe(&demo));
    let session = crate::support::unique_name("quickchat_repl");
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux runs (scripts/install-deps.sh test installs it)")
    };
    let shell = format!(
        "HOME={} {} sql",
        dir.path().display(),
        env!("CARGO_BIN_EXE_quickchat-etl")
    );
    assert!(
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "50",
            "-c",
            dir.path().to_str().unwrap(),
            &shell
        ])
        .status
        .success()
    );
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
    let wait_for = |text: &str| {
        for _ in 0..300 {
            if screen().contains(text) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = tmux(&["kill-session", "-t", &session]);
        panic!("the shell never showed {text:?}:\n{}", screen());
    };
    let keys = |keys: &[&str]| {
        let mut args = vec!["send-keys", "-t", session.as_str()];
        args.extend_from_slice(keys);
        assert!(tmux(&args).status.success());
    };
    wait_for("quickchat>");
    keys(&["SELECT count(*) AS n FROM gold.daily_m", "Tab"]);
    wait_for("gold.daily_metrics");
    keys(&["\\;", "Enter"]);
    wait_for("1 row(s) in");
    let slow = "SELECT count(*) FROM (SELECT unnest(range(1, 400000000)) AS a) AS x WHERE a % 7 = 3";
    keys(&[slow, "\\;", "Enter"]);
    // The shell took the line and runs it once the cursor has left the line the query is on.
    let cursor_line = || {
        let out = tmux(&["display-message", "-p", "-t", &session, "#{cursor_y}"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let running = (0..300).any(|_| {
        let query_line = screen().lines().position(|l| l.contains("unnest(range(1, 400000000))"));
        if query_line.is_some_and(|line| cursor_line() > line) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(running, "the shell never took the slow query:\n{}", screen());
    keys(&["C-c"]);
    wait_for("query cancelled");
    keys(&["SELECT 40 + 2 AS answer", "\\;", "Enter"]);
    wait_for("| 42");
    keys(&["\\q", "Enter"]);
    let _ = tmux(&["kill-session", "-t", &session]);
}
