"""`make demo` / `make down`: a whole local Sundial stack, in the background, on this machine.

Starts etcd + kube-apiserver (no nodes: nothing here needs a kubelet), PostgreSQL and Redis on
free loopback ports, applies the CRDs, starts the operator and two workers as local processes,
applies `examples/` into the `sundial-demo` namespace and waits until runs are recorded.
Everything it starts is remembered in `.sundial/demo.json`, so `down` stops exactly that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from sundial.core.migrate import migrate
from sundial.devstack.controlplane import ControlPlane, controlplane_bin_dir, find_repo_root
from sundial.devstack.services import Postgres, RedisServer, ServiceError, free_port

NAMESPACE = "sundial-demo"
FIRST_RUNS_TIMEOUT = 180.0


def state_dir() -> Path:
    return find_repo_root() / ".sundial"


def up() -> int:
    root = state_dir()
    if (root / "demo.json").exists():
        down(quiet=True)
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    state: dict[str, object] = {"pids": {}}
    pids: dict[str, int] = state["pids"]  # type: ignore[assignment]

    def remember() -> None:
        (root / "demo.json").write_text(json.dumps(state, indent=2))

    step("building or finding etcd, kube-apiserver and kubectl")
    bin_dir = controlplane_bin_dir()
    step("starting etcd and kube-apiserver")
    plane = ControlPlane(root / "controlplane", bin_dir=bin_dir)
    plane.start()
    plane.detach()
    pids.update({f"controlplane:{name}": pid for name, pid in plane.pids.items()})
    remember()

    step("starting PostgreSQL and Redis")
    postgres = Postgres(root / "postgres").start()
    redis = RedisServer(root / "redis").start()
    assert postgres.process is not None
    assert redis.process is not None
    pids.update({"postgres": postgres.process.pid, "redis": redis.process.pid})
    remember()
    applied = migrate(postgres.dsn)
    step(f"database migrated ({len(applied)} migrations applied)")

    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "DATABASE_URL": postgres.dsn,
           "REDIS_URL": redis.url, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    kubectl = [str(bin_dir / "kubectl")]
    run([*kubectl, "apply", "-f", str(find_repo_root() / "deploy" / "crds")], env)
    run([*kubectl, "wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s"], env)
    run([*kubectl, "create", "namespace", NAMESPACE], env, check=False)

    step("starting the operator and two workers")
    bin_python = Path(sys.executable).parent
    operator_port = free_port()
    pids["operator"] = spawn([str(bin_python / "sundial-operator"), "--standalone"],
                             {**env, "SUNDIAL_METRICS_PORT": str(operator_port)}, logs / "operator.log")
    metrics_ports = [free_port(), free_port()]
    for index, port in enumerate(metrics_ports):
        pids[f"worker-{index}"] = spawn(
            [str(bin_python / "sundial-worker")],
            {**env, "SUNDIAL_WORKER_ID": f"demo-worker-{index}", "SUNDIAL_METRICS_PORT": str(port)},
            logs / f"worker-{index}.log",
        )
    remember()

    run([*kubectl, "apply", "-n", NAMESPACE, "-f", str(find_repo_root() / "examples")], env)
    step("waiting for the first runs to be recorded")
    wait_for_runs(postgres.dsn, env, kubectl, logs)

    env_file = root / "demo.env"
    env_file.write_text(
        f"export KUBECONFIG={plane.kubeconfig}\n"
        f"export DATABASE_URL={postgres.dsn}\n"
        f"export REDIS_URL={redis.url}\n"
        f"export PATH={bin_dir}:$PATH\n"
        f"export SUNDIAL_WORKER_METRICS={','.join(f'http://127.0.0.1:{p}/metrics' for p in metrics_ports)}\n"
        f"export SUNDIAL_OPERATOR_METRICS=http://127.0.0.1:{operator_port}/metrics\n"
    )
    print()
    print(run([*kubectl, "get", "scheduledjobs", "-n", NAMESPACE], env).stdout)
    print(f"Sundial is running. Logs: {logs}")
    print(f"Use it from your shell:  source {env_file}")
    print(f"  kubectl get sj -n {NAMESPACE} -w       # watch runs land")
    print("Stop everything:         make down")
    return 0


def wait_for_runs(dsn: str, env: dict[str, str], kubectl: list[str], logs: Path) -> None:
    deadline = time.monotonic() + FIRST_RUNS_TIMEOUT
    while time.monotonic() < deadline:
        query = [*kubectl, "get", "scheduledjob", "demo-heartbeat", "-n", NAMESPACE, "-o",
                 "jsonpath={.status.lastStatus}"]
        status = run(query, env, check=False).stdout.strip()
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM job_runs WHERE status <> 'running'").fetchone()
        if status and row and row[0] >= 2:
            return
        time.sleep(1)
    raise SystemExit(f"no runs recorded within {FIRST_RUNS_TIMEOUT:g}s; see the logs in {logs}")


def down(*, quiet: bool = False) -> int:
    root = state_dir()
    try:
        state = json.loads((root / "demo.json").read_text())
    except (OSError, ValueError):
        if not quiet:
            print("nothing to stop (no .sundial/demo.json)")
        return 0
    pids: dict[str, int] = state.get("pids", {})
    # Workers and operator first, so nothing logs connection errors about the services going.
    order = sorted(pids, key=lambda name: (name.startswith(("postgres", "redis", "controlplane")), name))
    for name in order:
        stop_group(pids[name], signal.SIGINT if name == "postgres" else signal.SIGTERM)
    (root / "demo.json").unlink(missing_ok=True)
    if not quiet:
        print(f"stopped {len(pids)} processes")
    return 0


def spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    process = subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    return process.pid


def stop_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run(argv: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed:\n{result.stdout}{result.stderr}")
    return result


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sundial.devstack.demo", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    try:
        return up() if args.command == "up" else down()
    except ServiceError as exc:
        raise SystemExit(f"demo: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
