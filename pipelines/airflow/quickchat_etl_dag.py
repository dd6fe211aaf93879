"""QuickChat ETL on Airflow: one BashOperator per quickchat-etl job, wired like the job graph.

The tasks and their dependencies come from `jobs.json` next to this file: the job graph as
`quickchat-etl list --format json` writes it (one JSON object per job), the way a dbt DAG reads
dbt's `manifest.json`. The file is data, so Airflow's DAG processor, which parses this file
every few seconds and often has no quickchat-etl binary, never runs anything to load it. After
changing pipelines/*.toml, write it again:

    quickchat-etl list --format json > pipelines/airflow/jobs.json

(a test fails while it differs from the pipelines). Each task runs one job for the run's logical
date (`--date {{ ds }}`); a rerun replaces exactly that day's partitions, so retries, clears and
backfills are safe.

quickchat-etl exit codes: 0 success, 2 usage, 3 configuration, 4 job failed (source, SQL,
sink or storage; often transient, so retried), 5 data-quality failure (a `fail` expectation;
look at meta.quarantine), 6 state error (a streaming checkpoint), 130 interrupted.

Environment on the workers: QUICKCHAT_ETL_BIN (default `quickchat-etl` on PATH),
DATA_LAKE_PATH, MYSQL_URL / MYSQL_USER / MYSQL_PASSWORD, AWS_* for S3 or MinIO,
LANDING_PATH for the MongoDB exports.
"""

import json
import os
from datetime import datetime, timedelta, timezone

from airflow import DAG

try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without apache-airflow-providers-standard
    from airflow.operators.bash import BashOperator

BINARY = os.environ.get("QUICKCHAT_ETL_BIN", "quickchat-etl")
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobs.json")


def quickchat_jobs():
    """Every job with its dependencies, from the manifest."""
    with open(MANIFEST, encoding="utf-8") as manifest:
        return [json.loads(line) for line in manifest if line.strip()]


def task_id(job):
    return job.replace("-", "_")


with DAG(
    dag_id="quickchat_etl",
    description="QuickChat bronze -> silver -> gold ETL on Delta Lake (quickchat-etl)",
    schedule="@daily",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["quickchat", "etl", "delta"],
) as dag:
    # Streaming pipelines (layer "streaming") are long-running services, not daily tasks; run
    # them under a supervisor, or from their own DAG with `run <pipeline> --until-caught-up`.
    jobs = [job for job in quickchat_jobs() if job["layer"] != "streaming"]
    tasks = {
        job["job"]: BashOperator(
            task_id=task_id(job["job"]),
            bash_command=f"{BINARY} --log-format json run {job['job']} --date {{{{ ds }}}}",
            doc_md=job["description"],
        )
        for job in jobs
    }
    for job in jobs:
        for upstream in filter(None, (name.strip() for name in job["depends_on"].split(","))):
            tasks[upstream] >> tasks[job["job"]]
    # Lake upkeep once the day's jobs are done: compaction (or Z-order), VACUUM keeping 7 days
    # of versions, a log checkpoint and log expiry on every table, streaming ones included.
    maintain = BashOperator(
        task_id="maintain_lake",
        bash_command=f"{BINARY} --log-format json maintain all",
        doc_md="Delta upkeep of every table of the lake (quickchat-etl maintain).",
    )
    for task in tasks.values():
        task >> maintain
