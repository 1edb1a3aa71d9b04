"""The zmqpipeline command: run, list, the single-role commands and bad input."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import free_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def zmqpipeline(
    *args: str, cwd: Path | None = None, timeout: float = 45, stdin: str | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        input=stdin,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_pipeline(
    folder: Path, n_items: int = 30, poison: int | None = None, collector_port: int | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    port = collector_port or free_port()
    (folder / "settings.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        TASK_TYPE = 'CLI_JOB'
        zmqpipeline.TaskType.register_type(TASK_TYPE)
        WORKER_ENDPOINT = 'ipc://{folder}/w.ipc'
        COLLECTOR_ENDPOINT = 'tcp://127.0.0.1:{port}'
        ACK_ENDPOINT = 'tcp://127.0.0.1:{free_port()}'
    """)
    )
    (folder / "tasks.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                if self.n >= {n_items}:
                    self.is_complete = True
                return {{'i': self.n}}
    """)
    )
    (folder / "worker.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobWorker(zmqpipeline.SingleThreadedWorker):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            collector_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            def handle_execution(self, data, *args, **kwargs):
                if data['i'] == {poison!r}:
                    raise ValueError('poisoned item')
                return {{'i': data['i']}}
    """)
    )
    (folder / "collector.py").write_text(
        textwrap.dedent("""
        import settings, zmqpipeline
        class JobCollector(zmqpipeline.Collector):
            endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            ack_endpoint = zmqpipeline.EndpointAddress(settings.ACK_ENDPOINT)
            seen = []
            def handle_collection(self, data, task_type, msgtype):
                self.seen.append(data['i'])
            def handle_finished(self, data, task_type):
                print('COLLECTED', sorted(self.seen))
    """)
    )
    return folder


def test_run_reports_every_item_and_exits_zero(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    result = zmqpipeline("run", str(folder), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 41))}" in result.stdout
    assert "CLI_JOB" in result.stdout and "OK: all 40 items collected" in result.stdout
    assert result.stdout.count("worker JobWorker") == 2  # one line per worker process
    assert not list(folder.glob("*.ipc"))


def test_run_with_a_failed_item_prints_it_and_exits_non_zero(tmp_path):
    folder = write_pipeline(tmp_path / "poison", n_items=10, poison=4)
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 1
    assert "FAILED CLI_JOB/3 after 3 attempt(s): ValueError: poisoned item" in result.stdout
    assert "data {'i': 4}" in result.stdout  # the start of the failed item's data
    assert f"COLLECTED {[1, 2, 3, 5, 6, 7, 8, 9, 10]}" in result.stdout


def test_list_names_every_role(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    result = zmqpipeline("list", str(folder))
    assert result.returncode == 0, result.stderr
    for expected in (
        "task       JobTask",
        "worker     JobWorker",
        "collector  JobCollector",
        "type CLI_JOB",
        "single-threaded",
    ):
        assert expected in result.stdout


def test_single_role_commands_run_a_pipeline(tmp_path, procs):
    folder = write_pipeline(tmp_path / "job", n_items=25)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = []
    try:
        for args in (
            ["collector", "collector.py:JobCollector"],
            ["worker", "worker.py:JobWorker"],
            ["worker", "worker"],
            ["distributor", "tasks.py", "collector"],
        ):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zmqpipeline", *args],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=40) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    assert [p.returncode for p in started] == [0, 0, 0, 0], outputs
    assert f"COLLECTED {list(range(1, 26))}" in outputs[0][0]
    assert "collected {'CLI_JOB': 25}, failed 0" in outputs[3][0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "/no/such/folder"], "no such folder: /no/such/folder"),
        (["run", "/no/such/tasks.py"], "no such file: /no/such/tasks.py (expected the folder"),
        (["collector", "{job}/collector.py:JobColector"], "did you mean"),
        (["run", "{job}", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
        (["run", "{empty}"], "holds no Python files"),
        (["run", "{job}", "--workers", "0"], "expected a positive integer, got 0"),
        (["run", "{job}", "--threads", "x"], "expected a positive integer, got 'x'"),
        (["worker", "{job}/tasks.py:JobTask"], "is not a Worker subclass"),
        (["collector", "{job}/worker.py:Nope"], "has no Nope"),
        (["worker", "{job}/missing.py:X"], "no such file"),
        (["worker", "no_such_module_xyz:X"], "cannot import no_such_module_xyz"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "{broken}"], "cannot import"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(tmp_path, args, message):
    job = write_pipeline(tmp_path / "job")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tasks.py").write_text("this is not python\n")
    paths = {"job": str(job), "empty": str(tmp_path / "empty"), "broken": str(tmp_path / "broken")}
    result = zmqpipeline(*[a.format(**paths) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("zmqpipeline: error:")


def test_ctrl_c_drains_the_run_and_leaves_nothing(tmp_path):
    """The terminal's Ctrl-C reaches `run` alone (its children have groups of their own):
    the first drains the run through its control endpoint, whose report says so."""
    folder = write_pipeline(tmp_path / "slow", n_items=10_000)
    (folder / "worker.py").write_text(
        (folder / "worker.py")
        .read_text()
        .replace(
            "return {'i': data['i']}", "import time; time.sleep(0.01); return {'i': data['i']}"
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("control: ipc://"), line
        # progress lines appear every 2 s on a pipe: wait for the first
        line = process.stdout.readline()
        assert "collected" in line, line
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, out + err
    assert "Ctrl-C: draining" in out and "interrupted: drained the run" in out, out
    assert "drained: nothing new was handed out" in out
    assert "NOT OK" in out and "abandoned" not in out
    leftovers = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("zmqpipeline-")]


# -- what a new user trips over (issue 13) --------------------------------------------------


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def test_exception_in_task_handle_is_reported_with_its_call_and_exit_1(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=10)
    edit(folder / "tasks.py", "self.n += 1\n", "self.n += 1\n        1 / (self.n - 5)\n")
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAILED CLI_JOB: Task.handle() raised on call 5: ZeroDivisionError: division by zero"
        in result.stdout
    )
    assert "OK: all" not in result.stdout and "NOT OK" in result.stdout


def test_killed_worker_is_named_with_pid_and_signal_and_exit_1(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    marker = tmp_path / "killed-once"
    edit(
        folder / "worker.py",
        "if data['i'] ==",
        "import os, signal\n"
        f"        if data['i'] == 5 and not os.path.exists({str(marker)!r}):\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        if data['i'] ==",
    )
    result = zmqpipeline("run", str(folder), "--workers", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 41))}" in result.stdout  # nothing lost
    killed = [line for line in result.stdout.splitlines() if "killed by SIGKILL" in line]
    assert any("worker JobWorker" in line and "pid" in line for line in killed), result.stdout
    assert "PROCESS FAILED: worker JobWorker (pid" in result.stdout
    assert "never handed out" in result.stdout


def test_module_running_its_distributor_at_import_is_refused(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    (folder / "run_distributor.py").write_text(
        "import zmqpipeline, tasks, collector\n"
        "zmqpipeline.Distributor.register_task(tasks.JobTask)\n"
        "zmqpipeline.Distributor(collector.JobCollector.endpoint,\n"
        "                        collector.JobCollector.ack_endpoint).run()\n"
    )
    result = zmqpipeline("run", str(folder), timeout=20)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "run_distributor.py runs a Distributor when it is imported" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_reports_a_worker_it_could_not_load(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    edit(folder / "worker.py", "collector_endpoint =", "collector_endpiont =")
    result = zmqpipeline("list", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT LOADED" in result.stdout and "did you mean 'collector_endpoint'" in result.stdout
    assert "task       JobTask" in result.stdout  # what did load is still listed


def test_curve_variables_naming_missing_files_fail_in_one_line(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    keys = tmp_path / "keys"
    assert zmqpipeline("keys", str(keys), "--name", "w1").returncode == 0
    for secret, authorized in (
        (keys / "missing.key_secret", keys),
        (keys / "w1.key_secret", keys / "authorized"),  # the README's folder, never made
    ):
        env = {
            "ZMQPIPELINE_CURVE_SECRET_KEY": str(secret),
            "ZMQPIPELINE_CURVE_AUTHORIZED_KEYS": str(authorized),
        }
        result = run_with_env(env, "run", str(folder))
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "ZMQPIPELINE_CURVE_" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""


def run_with_env(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )


def test_readme_security_block_works_pasted_as_is(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Across machines, securely", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0]
    shutil.copytree(ROOT / "examples" / "singlethread", tmp_path / "examples" / "singlethread")
    script = block.replace("zmqpipeline ", f"{sys.executable} -m zmqpipeline ")
    result = subprocess.run(
        [
            "bash",
            "-e",
            "-c",
            script + f"\n{sys.executable} -m zmqpipeline run examples/singlethread --quiet\n",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK: all 100 items collected") == 2, result.stdout
    assert "Traceback" not in result.stderr


def test_log_level_after_the_command_and_a_file_for_its_folder(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=5)
    result = zmqpipeline("run", str(folder / "tasks.py"), "--log-level", "INFO")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all 5 items collected" in result.stdout
    assert " INFO " in result.stderr  # the level took effect


def test_help_explains_module_class_without_markup():
    top = zmqpipeline("--help")
    assert top.returncode == 0 and "``" not in top.stdout
    for role in ("worker", "collector", "metadata"):
        text = zmqpipeline(role, "--help").stdout
        assert "MODULE:CLASS names one class" in text and "example:" in text
        assert f"zmqpipeline {role} " in text
    assert "PATH" in zmqpipeline("list", "--help").stdout


def test_children_have_distinct_process_titles_shown_with_their_pid(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=4)
    edit(
        folder / "worker.py",
        "return {'i': data['i']}",
        "return {'i': data['i'], 'comm': open('/proc/self/comm').read().strip()}",
    )
    edit(
        folder / "collector.py",
        "self.seen.append(data['i'])",
        "self.seen.append(data['i'])\n"
        "        print('COMM', data['comm'], open('/proc/self/comm').read().strip())",
    )
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "COMM zmqp-worker zmqp-collector" in result.stdout
    probe = "from zmqpipeline.cli.local import set_process_title as t; t('distributor'); "
    probe += "print(open('/proc/self/comm').read().strip())"
    named = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert named.stdout.strip() == "zmqp-distrib", named.stderr
    assert re.search(r"distributor +pid \d+", result.stdout)
    assert re.search(r"collector +pid \d+", result.stdout)


def _tasks(collected: int, size: int | None) -> dict[str, dict[str, int | None]]:
    return {
        "CLI_JOB": {
            "handed_out": collected + 2,
            "in_flight": 2,
            "collected": collected,
            "failed": 0,
            "size": size,
        }
    }


def test_progress_is_a_bar_with_eta_given_a_size_else_a_spinner():
    from zmqpipeline.cli.progress import progress_line

    sized = progress_line(_tasks(50, 200), elapsed=2.0)
    assert "25%" in sized and "50/200" in sized and "25 items/s" in sized
    assert "ETA 6.0 s" in sized  # 150 left at 25 items/s
    unsized = progress_line(_tasks(50, None), elapsed=2.0, tick=1)
    assert unsized.startswith("/ 50 collected") and "25 items/s" in unsized
    assert "ETA" not in unsized and "%" not in unsized


def test_output_of_the_processes_is_printed_above_the_bar():
    import io

    from zmqpipeline.cli.progress import Progress

    screen = io.StringIO()
    progress = Progress(screen, quiet=False, tty=True)
    progress._tqdm_class = None  # the plain bar, tqdm or not
    progress.show(_tasks(10, 100))
    progress.echo("hello from a worker", screen)
    progress.clear()
    # the bar is erased (\r + blanks + \r) before the line and drawn again after it
    before, after = screen.getvalue().split("hello from a worker\n")
    assert before.endswith("\r") and before.rstrip("\r ").startswith("\r[")
    assert after.startswith("\r[")
    visible = screen.getvalue().split("\r")
    assert "hello from a worker\n" in visible  # the line stands whole on its own


def test_progress_shows_no_rate_before_a_second_of_work():
    from zmqpipeline.cli.progress import progress_line

    assert "- items/s" in progress_line(_tasks(45, None), elapsed=0.01)
    assert "ETA -" in progress_line(_tasks(45, 100), elapsed=0.01)


def test_children_of_a_killed_run_end_with_it(tmp_path):
    """`zmqpipeline run` SIGKILLed (a CI timeout, an OOM kill): its children do not run on
    as orphans; the kernel sends them SIGTERM and they stop."""
    folder = write_pipeline(tmp_path / "job", n_items=1_000_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder), "--workers", "2", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 30
    children: list[int] = []
    while len(children) < 4 and time.monotonic() < deadline:  # collector, distributor, 2 workers
        children = [int(pid) for pid in children_file.read_text().split()]
        time.sleep(0.05)  # waiting for processes to be created: there is no event to await
    assert len(children) == 4, children
    handles = [os.pidfd_open(pid) for pid in children]
    try:
        parent.kill()
        parent.wait(10)
        for handle in handles:  # a pidfd turns readable when its process ends
            readable, _, _ = select.select([handle], [], [], 15)
            assert readable, "a child outlived its killed parent"
    finally:
        for handle in handles:
            os.close(handle)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
