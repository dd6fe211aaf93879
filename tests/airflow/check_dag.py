"""Loads pipelines/airflow/ with a real Airflow DagBag — as Airflow's DAG processor does, with no
quickchat-etl binary on PATH — and checks that the DAG has one task per job of the manifest,
wired like the job graph, each running its job for {{ ds }}. Run by the Rust test suite
(tests/it/cli.rs) with the Airflow virtual environment scripts/install-deps.sh makes."""

import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
folder = os.path.join(root, "pipelines", "airflow")
bag = DagBag(dag_folder=folder)
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
dag = bag.dags.get("quickchat_etl")
assert dag is not None, sorted(bag.dag_ids)

with open(os.path.join(folder, "jobs.json"), encoding="utf-8") as manifest:
    jobs = [json.loads(line) for line in manifest if line.strip()]
jobs = [job for job in jobs if job["layer"] != "streaming"]

tasks = {task.task_id: task for task in dag.tasks}
maintain = tasks.pop("maintain_lake")
assert set(tasks) == {j["job"].replace("-", "_") for j in jobs}, sorted(tasks)
assert set(maintain.upstream_task_ids) == set(tasks), maintain.upstream_task_ids
assert maintain.bash_command.endswith("maintain all"), maintain.bash_command
for job in jobs:
    task = tasks[job["job"].replace("-", "_")]
    assert type(task).__module__ == "airflow.providers.standard.operators.bash", type(task).__module__
    expected = {d.strip().replace("-", "_") for d in job["depends_on"].split(",") if d.strip()}
    assert set(task.upstream_task_ids) == expected, (job["job"], task.upstream_task_ids, expected)
    assert task.bash_command.endswith(f"run {job['job']} --date {{{{ ds }}}}"), task.bash_command
print(f"ok: {len(tasks)} job tasks and maintain_lake")
