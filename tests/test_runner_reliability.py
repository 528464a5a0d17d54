"""Exactly one FINISHED run per point, whatever happens to the runner, its workers or the store.

Real components throughout: runners are ``python -m mpimpy study run`` processes killed with
real signals, points run in real papermill kernels, the store is a real MLflow SQLite store (or
a real ``mlflow server``), Dask is a real LocalCluster, and full or read-only stores are real
filesystems (a small tmpfs or a read-only bind mount in a private mount namespace made by
``unshare``; those tests are skipped where the system allows no such namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
import pytest
from studyfiles import ROOT, all_runs, default_sigint, write_study

from mpimpy import cli, tracking
from mpimpy.studies import load_study, run_study
from mpimpy.studies.lease import HEARTBEAT_TAG, Lease, lease_state
from mpimpy.studies.store import HASH_TAG, create_run, runs_with_status
from mpimpy.studies.worker import execute_point, point_task


def runner(uri: str, path: Path, tmp_path: Path, *args: str) -> subprocess.Popen:
    """``mpimpy study run`` in its own process, on the store ``uri``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "mpimpy", "study", "run", str(path), "--no-progress",
               "--output-dir", str(tmp_path / "out"), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=default_sigint)


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def runs_now(client, name: str) -> list:
    experiment = client.get_experiment_by_name(name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def statuses(client, name: str) -> Counter:
    return Counter(r.info.status for r in runs_now(client, name))


def assert_one_finished_run_per_point(client, path: Path) -> list:
    """Every point of the study has exactly one FINISHED run, and there are no others."""
    study = load_study(path)
    finished = [r for r in all_runs(client, study.experiment) if r.info.status == "FINISHED"]
    per_point = Counter(r.data.tags[HASH_TAG] for r in finished)
    assert per_point == Counter(p.params_hash for p in study.expand()), per_point
    return finished


def kernels_of(process: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in process.children(recursive=True):
        try:
            if "ipykernel_launcher" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


# ---------------------------------------------------------------------------------------------
# Runners that die, and runners that run at the same time


def test_killing_the_runner_alone_kills_its_workers_and_kernels(store, store_uri, tmp_path):
    block = tmp_path / "block"
    block.write_text("hold the points")
    path = write_study(tmp_path, "orphans", points=[
        {"a": 1, "block_file": str(block)}, {"a": 2, "block_file": str(block)}, {"a": 3}])
    proc = runner(store_uri, path, tmp_path, "--workers", "2")
    try:
        wait_for(lambda: statuses(store, "orphans")["RUNNING"] == 2, "two points in flight")
        wait_for(lambda: len(kernels_of(psutil.Process(proc.pid))) == 2, "their kernels")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)  # the runner alone, not its process group
        proc.wait()
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"orphans still running: {[p.cmdline() for p in alive]}"
    # their workers saw the runner go and marked its runs KILLED
    assert statuses(store, "orphans") == {"KILLED": 2}

    block.unlink()  # an orphan, had one survived, would now finish its point
    result = run_study(path, workers=2, output_dir=tmp_path / "out", progress=False)
    assert result.ok and len(result.with_status("FINISHED")) == 3
    time.sleep(2)
    assert statuses(store, "orphans") == {"KILLED": 2, "FINISHED": 3}
    assert_one_finished_run_per_point(store, path)


def test_kernels_started_together_share_no_ports(store, store_uri, tmp_path):
    """Kernels talk over Unix sockets in folders of their own: TCP ports, picked by each worker
    and bound later by its kernel, could be taken by another kernel starting at the same time
    (a point failing at random with "Kernel died before replying to kernel_info")."""
    block = tmp_path / "block"
    block.write_text("hold the points")
    path = write_study(tmp_path, "sockets", points=[
        {"a": 1, "block_file": str(block)}, {"a": 2, "block_file": str(block)}])
    proc = runner(store_uri, path, tmp_path, "--workers", "2")
    try:
        wait_for(lambda: statuses(store, "sockets")["RUNNING"] == 2, "two points in flight")
        kernels = wait_for(lambda: (k := kernels_of(psutil.Process(proc.pid))) and len(k) == 2
                           and k, "their kernels")
        folders = []
        for kernel in kernels:
            command = kernel.cmdline()
            connection = json.loads(Path(command[command.index("-f") + 1]).read_text())
            assert connection["transport"] == "ipc"
            sockets = wait_for(lambda kernel=kernel: [c.laddr for c in kernel.net_connections(
                kind="unix") if c.laddr], "the kernel's sockets")
            folders.append({os.path.dirname(s) for s in sockets})
        assert all(len(f) == 1 for f in folders) and folders[0] != folders[1], folders
        block.unlink()
        output, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
        block.unlink(missing_ok=True)
    assert proc.returncode == 0, output
    assert statuses(store, "sockets") == {"FINISHED": 2}
    assert not any(os.path.exists(f) for (f,) in folders)  # removed with their kernels


def test_two_runners_started_together_on_a_fresh_store_share_the_points(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # not there yet: both create it
    path = write_study(tmp_path, "together", grid={"a": [1, 2, 3, 4, 5, 6]})
    procs = [runner(uri, path, tmp_path, "--workers", "2") for _ in range(2)]
    outputs = []
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        outputs.append(output)
        assert proc.returncode == 0, output
        assert "Traceback" not in output, output
    client = tracking.get_client(uri)
    finished = assert_one_finished_run_per_point(client, path)
    assert len(all_runs(client, "together")) == len(finished) == 6  # withdrawn claims deleted


def test_a_second_runner_takes_the_free_points_and_waits_for_the_held_one(
        store, store_uri, tmp_path):
    block = tmp_path / "block"
    block.write_text("hold the first point")
    path = write_study(tmp_path, "second", points=[
        {"a": 1, "block_file": str(block)}, {"a": 2}, {"a": 3}, {"a": 4}])
    first = runner(store_uri, path, tmp_path, "--workers", "1")
    second = None
    try:
        wait_for(lambda: statuses(store, "second")["RUNNING"] == 1, "the first runner's point")
        second = runner(store_uri, path, tmp_path, "--workers", "2")
        wait_for(lambda: statuses(store, "second")["FINISHED"] == 3, "the free points")
        assert statuses(store, "second") == {"FINISHED": 3, "RUNNING": 1}  # not KILLED
        block.unlink()
        out_first, _ = first.communicate(timeout=300)
        out_second, _ = second.communicate(timeout=300)
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, out_first + out_second
    assert "waiting for a=1" in out_second and "held by the runner" in out_second
    assert "4 points: 1 finished, 3 skipped" in out_first
    assert "4 points: 3 finished, 1 skipped" in out_second
    assert statuses(store, "second") == {"FINISHED": 4}
    assert_one_finished_run_per_point(store, path)


def test_leases_of_a_dead_and_of_a_live_runner_elsewhere(store, tmp_path):
    """A lease not renewed within its time to live is taken over; a live one is waited for."""
    path = write_study(tmp_path, "leases", points=[{"a": 1}, {"a": 2}])
    study = load_study(path)
    dead_point, live_point = study.expand()
    experiment_id = tracking.ensure_experiment("leases", client=store)
    dead = create_run(store, experiment_id, study, dead_point, Lease("elsewhere", 1, "d", 60))
    store.set_tag(dead, HEARTBEAT_TAG, f"{time.time() - 1000:.3f}")
    live = create_run(store, experiment_id, study, live_point, Lease("elsewhere", 2, "l", 4))
    started = time.monotonic()
    result = run_study(path, output_dir=tmp_path / "out", progress=False)
    assert result.ok and len(result.with_status("FINISHED")) == 2
    assert time.monotonic() - started >= 3  # it waited for the live lease to expire
    for run_id, why in ((dead, "has not renewed its lease for 1000 s"),
                        (live, "has not renewed its lease for")):
        run = store.get_run(run_id)
        assert run.info.status == "KILLED", run.info
        assert why in run.data.tags["mpimpy.error"]
        assert "runner (elsewhere pid" in run.data.tags["mpimpy.error"]
    assert_one_finished_run_per_point(store, path)


def test_a_lease_is_judged_by_its_pid_only_where_the_pid_means_that_process(store, tmp_path):
    """A runner in a container with this host's name but its own processes is not dead because
    its pid is not visible here; a runner of this host and PID namespace whose pid is gone is."""
    path = write_study(tmp_path, "namespaces", grid={"a": [1, 2]})
    study = load_study(path)
    experiment_id = tracking.ensure_experiment("namespaces", client=store)
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    here = Lease.new()
    for point, node, live in zip(study.expand(), ("container", here.node), (True, False),
                                 strict=True):
        lease = Lease(here.host, gone.pid, "token", 60, node)
        run = store.get_run(create_run(store, experiment_id, study, point, lease))
        state, why = lease_state(run)
        assert state is live, why
        assert why.startswith("held by the runner" if live else f"its runner ({here.host} pid")


@pytest.mark.parametrize("how", ["guard", "last look"])
def test_a_run_marked_killed_while_its_point_runs_never_finishes(store, store_uri, tmp_path, how):
    """The guard stops the kernel at its next look at the run; a point that completes before
    that look still does not set FINISHED over KILLED."""
    block = tmp_path / "block"
    block.write_text("hold the point")
    path = write_study(tmp_path, f"killed-{how.replace(' ', '-')}",
                       parameters={"block_file": str(block)})
    study = load_study(path)
    (point,) = study.expand()
    experiment_id = tracking.ensure_experiment(study.experiment, client=store)
    lease = Lease.new()
    run_id = create_run(store, experiment_id, study, point, lease)
    task = point_task(study, point, run_id, uri=store_uri, experiment_id=experiment_id,
                      output_dir=tmp_path / "out", lease=lease,
                      status_poll_s=1 if how == "guard" else 600)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(execute_point(task)))
    worker.start()
    try:
        wait_for(lambda: Path(task["output_path"]).with_suffix(".kernel.log").exists(),
                 "the kernel")
        time.sleep(2)
        store.set_terminated(run_id, "KILLED")  # Ctrl-C in the runner, or a takeover
        if how == "last look":
            block.unlink()  # the notebook completes before the guard looks again
        worker.join(120)
    finally:
        block.unlink(missing_ok=True)
    assert not worker.is_alive()
    (result,) = outcome
    assert result["status"] == "KILLED"
    assert result["error"] == "stopped: its run was marked KILLED meanwhile"
    assert store.get_run(run_id).info.status == "KILLED"


def test_a_dead_worker_fails_only_its_point(store, tmp_path):
    block = tmp_path / "block"
    block.write_text("hold the other points until the worker died")
    path = write_study(tmp_path, "dead-worker", points=[
        {"a": 1, "block_file": str(block)}, {"a": 2, "kill_worker": True},
        {"a": 3, "block_file": str(block)}, {"a": 4}])

    def release_when_the_worker_died():
        experiment = wait_for(lambda: store.get_experiment_by_name("dead-worker"), "experiment")
        wait_for(lambda: runs_with_status(store, experiment.experiment_id, "dead-worker",
                                          "FAILED"), "the dead worker's point")
        block.unlink()

    releaser = threading.Thread(target=release_when_the_worker_died)
    releaser.start()
    try:
        result = run_study(path, workers=3, output_dir=tmp_path / "out", progress=False)
    finally:
        releaser.join(180)
        block.unlink(missing_ok=True)
    (failed,) = result.with_status("FAILED")
    assert failed.point.parameters["kill_worker"] is True
    assert (f"the worker process running point {failed.point.point_id} died (killed by signal "
            "SIGKILL) before it reported; only this point is affected") in failed.error
    assert sorted(r.point.parameters["a"] for r in result.with_status("FINISHED")) == [1, 3, 4]
    assert statuses(store, "dead-worker") == {"FINISHED": 3, "FAILED": 1}
    assert store.get_run(failed.run_id).data.tags["mpimpy.error"] == failed.error


# ---------------------------------------------------------------------------------------------
# Dask, and a tracking server


def test_ctrl_c_under_dask_stops_the_points_on_the_cluster(store, store_uri, tmp_path):
    from distributed import Client, LocalCluster

    block = tmp_path / "block"
    block.write_text("hold the points")
    path = write_study(tmp_path, "dask-interrupt", points=[
        {"a": 1, "block_file": str(block)}, {"a": 2, "block_file": str(block)}])
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        proc = runner(store_uri, path, tmp_path, "--scheduler", cluster.scheduler_address)
        try:
            wait_for(lambda: statuses(store, "dask-interrupt")["RUNNING"] == 2, "the points")
            wait_for(lambda: len(client.processing()[next(iter(client.processing()))]) == 2,
                     "the points on the cluster")
            time.sleep(3)  # their kernels are running the blocked cell
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 1 and "Interrupted" in output, output
        assert statuses(store, "dask-interrupt") == {"KILLED": 2}
        # the blocked points stop on the cluster: their guards saw the runs KILLED
        wait_for(lambda: not any(client.processing().values()), "the cluster to stop", 60)
        block.unlink()
        time.sleep(2)
        assert statuses(store, "dask-interrupt") == {"KILLED": 2}
        result = run_study(path, scheduler=cluster.scheduler_address,
                           output_dir=tmp_path / "out", progress=False)
    assert result.ok and len(result.with_status("FINISHED")) == 2
    assert statuses(store, "dask-interrupt") == {"KILLED": 2, "FINISHED": 2}
    assert_one_finished_run_per_point(store, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_runners_on_a_tracking_server_one_of_them_on_dask(tmp_path):
    from distributed import LocalCluster

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def healthy():
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, "the tracking server", 180)
        path = write_study(tmp_path, "server", grid={"a": [1, 2, 3, 4, 5]})
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster:
            procs = [runner(uri, path, tmp_path, "--scheduler", cluster.scheduler_address),
                     runner(uri, path, tmp_path, "--workers", "2")]
            for proc in procs:
                output, _ = proc.communicate(timeout=600)
                assert proc.returncode == 0 and "Traceback" not in output, output
        client = tracking.get_client(uri)
        finished = assert_one_finished_run_per_point(client, path)
        assert len(all_runs(client, "server")) == len(finished) == 5
        for run in finished:
            assert [a.path for a in client.list_artifacts(run.info.run_id, "notebook")]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


# ---------------------------------------------------------------------------------------------
# A store that is full, read-only or cannot be created


def namespace_prefix() -> list[str]:
    """A command prefix that runs in a private mount namespace where this user may mount."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare command: cannot make a private full or read-only filesystem")
    prefix = [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]
    probe = subprocess.run([*prefix, "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    return prefix


def run_confined(mounts: str, store: Path, path: Path, tmp_path: Path, *args: str):
    """``mpimpy study run`` on the local store ``store`` after ``mounts`` (shell commands) in
    a private mount namespace."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPIMPY_STORE=str(store), PYTHONPATH=str(ROOT))
    command = " ".join([sys.executable, "-m", "mpimpy", "study", "run", str(path),
                        "--no-progress", "--output-dir", str(tmp_path / "out"), *args])
    return subprocess.run([*namespace_prefix(), "sh", "-ec", f"{mounts}\nexec {command}"],
                          env=env, capture_output=True, text=True, timeout=600)


def test_a_full_artifact_store_stops_the_study_with_a_clear_message(tmp_path):
    store = tmp_path / "store"
    (store / "artifacts").mkdir(parents=True)
    path = write_study(tmp_path, "full", grid={"a": list(range(12))})
    # room for a few executed notebooks (each also rendered as HTML, about 0.3 MB), not twelve
    done = run_confined(f"mount -t tmpfs -o size=1m tmpfs {store / 'artifacts'}", store, path,
                        tmp_path, "--workers", "2")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert "No space left on device" in output and str(store / "artifacts") in output, output
    assert "Stopped: cannot write to the experiment store" in output
    client = tracking.get_client(f"sqlite:///{store / 'mlflow.db'}")
    counts = statuses(client, "full")
    assert counts["FAILED"] >= 1 and counts["FINISHED"] >= 1 and "RUNNING" not in counts, counts
    assert sum(counts.values()) < 12  # it stopped starting points
    for run in runs_now(client, "full"):
        if run.info.status == "FAILED":
            assert "No space left on device" in run.data.tags["mpimpy.error"]
    assert "not started" in output


def test_a_read_only_artifact_store_marks_the_runs_failed(tmp_path):
    store = tmp_path / "store"
    (store / "artifacts").mkdir(parents=True)
    path = write_study(tmp_path, "read-only-artifacts", grid={"a": [1, 2, 3, 4]})
    artifacts = store / "artifacts"
    done = run_confined(f"mount --bind {artifacts} {artifacts}\n"
                        f"mount -o remount,bind,ro {artifacts}", store, path, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert "Read-only file system" in output and str(artifacts) in output, output
    client = tracking.get_client(f"sqlite:///{store / 'mlflow.db'}")
    assert statuses(client, "read-only-artifacts") == {"FAILED": 1}  # then it stopped


def test_a_read_only_store_is_refused_before_anything_runs(tmp_path):
    store = tmp_path / "store"
    path = write_study(tmp_path, "read-only")
    tracking.get_client(f"sqlite:///{store / 'mlflow.db'}")  # an existing store
    done = run_confined(f"mount --bind {store} {store}\nmount -o remount,bind,ro {store}",
                        store, path, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert f"error: cannot open the experiment store (local store {store / 'mlflow.db'}" in output
    assert "Read-only file system" in output
    assert tracking.get_client(f"sqlite:///{store / 'mlflow.db'}").get_experiment_by_name(
        "read-only") is None


def test_a_store_folder_that_cannot_be_created(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    store = tmp_path / "a-file" / "store"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MPIMPY_STORE", str(store))
    path = write_study(tmp_path, "nowhere")
    assert cli.main(["study", "run", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot open the experiment store (local store {store / 'mlflow.db'}" in err
    assert "NotADirectoryError" in err and "Traceback" not in err
