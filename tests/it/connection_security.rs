//! Connections over TLS, through the binary, against the servers `scripts/services.sh` starts
//! with certificates of its own test CA: Kafka's SASL_SSL listener (`produce` authenticates with
//! SCRAM-SHA-256, a streaming run with PLAIN, every event arrives once; a wrong password exits 4
//! naming the brokers and what to set, and is never printed), MariaDB (a user that may
//! connect over TLS only loads and reads the users table; without the CA the server's
//! certificate is refused) and FerretDB's TLS listener (the calls read over TLS are the export
//! file's; without the CA the certificate is refused).

use std::process::Command;

use mysql_async::prelude::Queryable;
use quickchat_etl::ExitCode;

use crate::stream_support::{StreamProject, mysql};
use crate::support::{TestLake, describe, exit, required_env, unique_name};

/// The SASL_SSL settings of the test broker, as a user would set them, with `mechanism`.
fn secured(command: &mut Command, mechanism: &str, password: &str) {
    command
        .env(
            "KAFKA_BOOTSTRAP_SERVERS",
            required_env("QUICKCHAT_TEST_KAFKA_SASL_SSL_BROKERS"),
        )
        .env("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        .env("KAFKA_SASL_MECHANISM", mechanism)
        .env(
            "KAFKA_SASL_USERNAME",
            required_env("QUICKCHAT_TEST_KAFKA_SASL_USERNAME"),
        )
        .env("KAFKA_SASL_PASSWORD", password)
        .env("KAFKA_SSL_CA_LOCATION", required_env("QUICKCHAT_TEST_TLS_CA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_tls_and_sasl_once_and_a_wrong_password_is_never_printed() {
    let name = "clickstream-analytics";
    let password = required_env("QUICKCHAT_TEST_KAFKA_SASL_PASSWORD");
    let project = StreamProject::new(1_000).await;
    let pipeline = project.pipeline(name);
    project.create_topics(&pipeline).await;
    let lake = TestLake::local();
    let topic = project.topic("clickstream");

    let mut produce = project.command(
        &lake,
        &[
            "produce",
            "clickstream",
            "--topic",
            &topic,
            "--count",
            "3000",
            "--rate",
            "1000000",
            "--seed",
            "11",
        ],
    );
    secured(&mut produce, "SCRAM-SHA-256", &password);
    let produced = produce.output().unwrap();
    assert!(
        produced.status.success(),
        "produce over SASL_SSL: {}",
        describe(&produced)
    );

    let mut run = project.command(&lake, &["run", name, "--until-caught-up"]);
    secured(&mut run, "PLAIN", &password);
    let output = run.output().unwrap();
    assert!(output.status.success(), "run over SASL_SSL: {}", describe(&output));
    // `produce` sends well-formed events only: each one once in bronze.
    assert_eq!(
        lake.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM bronze.clickstream")
            .await,
        "n|d\n3000|3000\n"
    );

    // A wrong password: the brokers refuse, the run gives up with the address and what to set.
    let wrong = "not-the-kafka-s3cret";
    let mut refused = project.command(&lake, &["run", name, "--until-caught-up", "--retry-for", "3s"]);
    secured(&mut refused, "SCRAM-SHA-256", wrong);
    let output = refused.output().unwrap();
    assert_eq!(output.status.code(), exit(ExitCode::JobFailed), "{}", describe(&output));
    let printed = describe(&output);
    assert!(
        printed.contains(&required_env("QUICKCHAT_TEST_KAFKA_SASL_SSL_BROKERS")),
        "{printed}"
    );
    assert!(printed.contains("KAFKA_SASL_PASSWORD"), "{printed}");
    assert!(printed.contains("SASL_SSL SCRAM-SHA-256 as quickchat"), "{printed}");
    assert!(
        !printed.contains(wrong) && !printed.contains(&password),
        "a password printed: {printed}"
    );
    project.drop_database().await;
}

/// `quickchat-etl --lake <lake> <args>` with the server variables of the environment cleared and
/// `env` set instead.
fn on_lake(lake: &TestLake, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickchat-etl"));
    command
        .args(["--lake", &lake.root_arg])
        .args(args)
        .env("QUICKCHAT_LOG", "warn");
    for variable in [
        "DATA_LAKE_PATH",
        "QUICKCHAT_PROJECT",
        "MYSQL_URL",
        "MYSQL_SSL_CA",
        "MONGODB_URI",
    ] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_over_tls_loads_and_reads_the_users_and_an_unknown_certificate_is_refused() {
    let database = unique_name("quickchat_tls");
    let mut admin = mysql(&required_env("QUICKCHAT_TEST_MYSQL_URL")).await;
    admin.query_drop(format!("CREATE DATABASE {database}")).await.unwrap();
    // This user may connect over TLS only (`REQUIRE SSL`).
    let url = format!("{}/{database}", required_env("QUICKCHAT_TEST_MYSQL_TLS_URL"));
    let ca = required_env("QUICKCHAT_TEST_TLS_CA");
    let lake = TestLake::local();
    let landing = format!("{}/landing", lake.root_arg);

    let tls = [("MYSQL_URL", url.as_str()), ("MYSQL_SSL_CA", ca.as_str())];
    let generated = on_lake(
        &lake,
        &tls,
        &[
            "generate",
            "--out",
            &landing,
            "--users",
            "30",
            "--days",
            "2",
            "--load-mysql",
        ],
    );
    assert!(
        generated.status.success(),
        "users loaded over TLS: {}",
        describe(&generated)
    );
    let read = on_lake(&lake, &tls, &["run", "bronze-users"]);
    assert!(read.status.success(), "users read over TLS: {}", describe(&read));
    // The same users as the CSV export of the table gives (the one `generate` wrote beside it).
    let from_export = TestLake::local();
    let export_run = on_lake(&from_export, &[("LANDING_PATH", &landing)], &["run", "bronze-users"]);
    assert!(
        export_run.status.success(),
        "users read from the export: {}",
        describe(&export_run)
    );
    let users = "SELECT user_id, username, email, status, created_at, updated_at FROM bronze.users ORDER BY user_id";
    let over_tls = lake.query(users).await;
    // A header and 29 users: the generated table holds one row with a zero date, quarantined.
    assert_eq!(over_tls.lines().count(), 1 + 29, "{over_tls}");
    assert_eq!(over_tls, from_export.query(users).await);

    // Without TLS the server refuses the user; with TLS but without the test CA the client
    // refuses the server's certificate. Both are errors naming the server (exit 4).
    for (what, url, cause) in [
        ("no TLS", url.clone(), "Access denied"),
        ("an unknown CA", format!("{url}?require_ssl=true"), "MYSQL_SSL_CA"),
    ] {
        let refused = on_lake(
            &lake,
            &[("MYSQL_URL", &url)],
            &["run", "bronze-users", "--retry-for", "1s"],
        );
        assert_eq!(
            refused.status.code(),
            exit(ExitCode::JobFailed),
            "{what}: {}",
            describe(&refused)
        );
        let printed = describe(&refused);
        assert!(
            printed.contains("127.0.0.1") && printed.contains(cause),
            "{what}: {printed}"
        );
    }
    admin.query_drop(format!("DROP DATABASE {database}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_over_tls_reads_what_the_export_holds_and_an_unknown_certificate_is_refused() {
    let server = required_env("QUICKCHAT_TEST_MONGODB_TLS_URI");
    let ca = required_env("QUICKCHAT_TEST_TLS_CA");
    let database = unique_name("quickchat_tls");
    let uri = format!("{server}?tls=true&tlsCAFile={ca}");
    let from_server = TestLake::local();
    let landing = format!("{}/landing", from_server.root_arg);

    let generated = on_lake(
        &from_server,
        &[],
        &[
            "generate",
            "--out",
            &landing,
            "--users",
            "20",
            "--days",
            "2",
            "--load-mongodb",
        ]
        .into_iter()
        .chain(["--mongodb-uri", &uri, "--mongodb-database", &database])
        .collect::<Vec<_>>(),
    );
    assert!(generated.status.success(), "loaded over TLS: {}", describe(&generated));

    // `bronze-calls` over the landing folder, reading `database` at the server when given one.
    let bronze_calls = |lake: &TestLake, uri: Option<&str>| {
        let mut env = vec![
            ("LANDING_PATH", landing.as_str()),
            ("MONGODB_DATABASE", database.as_str()),
        ];
        env.extend(uri.map(|uri| ("MONGODB_URI", uri)));
        on_lake(lake, &env, &["--retry-for", "1s", "run", "bronze-calls"])
    };
    let read = bronze_calls(&from_server, Some(&uri));
    assert!(read.status.success(), "read over TLS: {}", describe(&read));
    let from_export = TestLake::local();
    let read = bronze_calls(&from_export, None);
    assert!(read.status.success(), "read from the export: {}", describe(&read));
    // The export holds some documents twice; the server each once.
    let calls = "SELECT DISTINCT * FROM bronze.calls";
    let over_tls = from_server.query(calls).await;
    assert!(over_tls.lines().count() > 1, "no calls: {over_tls}");
    assert_eq!(over_tls, from_export.query(calls).await);

    // Without the test CA the driver refuses the server's certificate: exit 4 naming the server.
    let unknown = format!("{server}?tls=true&serverSelectionTimeoutMS=1000");
    let refused = bronze_calls(&TestLake::local(), Some(&unknown));
    assert_eq!(
        refused.status.code(),
        exit(ExitCode::JobFailed),
        "{}",
        describe(&refused)
    );
    let printed = describe(&refused);
    assert!(
        printed.contains(server.trim_start_matches("mongodb://").trim_end_matches('/')),
        "{printed}"
    );
    assert!(printed.contains("tlsCAFile"), "{printed}");
}
