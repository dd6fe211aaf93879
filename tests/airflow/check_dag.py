"""Loads pipelines/airflow/quickchat_etl_dag.py against a minimal stand-in for Airflow and
checks that it has one task per job, wired like `quickchat-etl list`, each running its job
for {{ ds }}. Run by the Rust test suite (tests/it/cli.rs) with QUICKCHAT_ETL_BIN set."""

import json
import os
import subprocess
import sys
import types


class Task:
    def __init__(self, task_id, bash_command, doc_md=None):
        self.task_id, self.bash_command, self.upstream = task_id, bash_command, set()
        CURRENT_DAG.tasks[task_id] = self

    def __rshift__(self, other):
        other.upstream.add(self.task_id)
        return other


class Dag:
    def __init__(self, dag_id, **kwargs):
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, {}

    def __enter__(self):
        global CURRENT_DAG
        CURRENT_DAG = self
        return self

    def __exit__(self, *exc):
        return False


CURRENT_DAG = None
airflow = types.ModuleType("airflow")
airflow.DAG = Dag
operators = types.ModuleType("airflow.operators")
bash = types.ModuleType("airflow.operators.bash")
bash.BashOperator = Task
sys.modules.update({"airflow": airflow, "airflow.operators": operators, "airflow.operators.bash": bash})

dag_file = os.path.join(os.path.dirname(__file__), "..", "..", "pipelines", "airflow", "quickchat_etl_dag.py")
namespace = {}
exec(compile(open(dag_file).read(), dag_file, "exec"), namespace)
dag = namespace["dag"]

listing = subprocess.run(
    [os.environ["QUICKCHAT_ETL_BIN"], "list", "--format", "json"], check=True, capture_output=True, text=True
).stdout
jobs = [json.loads(line) for line in listing.splitlines()]
jobs = [job for job in jobs if job["layer"] != "streaming"]

assert dag.dag_id == "quickchat_etl"
assert set(dag.tasks) == {j["job"].replace("-", "_") for j in jobs}, sorted(dag.tasks)
for job in jobs:
    task = dag.tasks[job["job"].replace("-", "_")]
    expected = {d.strip().replace("-", "_") for d in job["depends_on"].split(",") if d.strip()}
    assert task.upstream == expected, (job["job"], task.upstream, expected)
    assert task.bash_command.endswith(f"run {job['job']} --date {{{{ ds }}}}"), task.bash_command
print(f"ok: {len(dag.tasks)} tasks")
