"""`make demo` / `make down`: a whole local Sundial stack, in the background, on this machine.

Starts etcd + kube-apiserver + kube-controller-manager (no nodes: nothing here needs a kubelet),
PostgreSQL and Redis on free loopback ports, applies the CRDs, starts the operator, two workers,
the launcher (jobTemplate jobs), the dashboard and the run history API (`sundial-runs-api`,
registered as the APIService v1alpha1.runs.sundial.dev so `kubectl get scheduledjobruns` works)
as local processes, applies `examples/` into the `sundial-demo` namespace and waits until runs
are recorded and the dashboard is ready. Everything it starts is remembered in `.sundial/demo.json`,
so `down` stops exactly that.

The dashboard runs in `token` mode and the printed link signs in with the control plane's admin
token (user `admin`, group `system:masters`): it already exists, is new on every `make demo`,
dies with the control plane at `make down`, and needs no RBAC objects that would show up in the
demo cluster. A ServiceAccount token would work the same way; system:masters simply lets every
button on the page work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

from sundial.core.migrate import migrate
from sundial.devstack import runsapi as runs_api
from sundial.devstack.controlplane import ControlPlane, controlplane_bin_dir, find_repo_root
from sundial.devstack.services import (
    Postgres,
    RedisClusterSet,
    RedisSentinelSet,
    RedisServer,
    ServiceError,
    free_port,
)

NAMESPACE = "sundial-demo"
FIRST_RUNS_TIMEOUT = 180.0
DASHBOARD_READY_TIMEOUT = 60.0
# Enough shards that the cluster's three primaries all get some.
CLUSTER_SHARDS = 6


def state_dir() -> Path:
    return find_repo_root() / ".sundial"


def up(redis_variant: str = "single") -> int:
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

    step("building or finding etcd, kube-apiserver, kube-controller-manager and kubectl")
    bin_dir = controlplane_bin_dir()
    step("starting etcd, kube-apiserver and kube-controller-manager")
    plane = ControlPlane(root / "controlplane", bin_dir=bin_dir)
    plane.start()
    plane.detach()
    pids.update({f"controlplane:{name}": pid for name, pid in plane.pids.items()})
    remember()

    step(f"starting PostgreSQL and Redis ({redis_variant})")
    postgres = Postgres(root / "postgres").start()
    assert postgres.process is not None
    pids["postgres"] = postgres.process.pid
    redis_url, redis_servers = start_redis(root, redis_variant)
    pids.update({name: server.process.pid for name, server in redis_servers.items() if server.process})
    remember()
    applied = migrate(postgres.dsn)
    step(f"database migrated ({len(applied)} migrations applied)")

    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "DATABASE_URL": postgres.dsn,
           "REDIS_URL": redis_url, "PATH": f"{demo_path(bin_dir)}{os.pathsep}{os.environ.get('PATH', '')}"}
    if redis_variant == "cluster":
        env["SUNDIAL_REDIS_SHARDS"] = str(CLUSTER_SHARDS)
    kubectl = [str(bin_dir / "kubectl")]
    run([*kubectl, "apply", "-f", str(find_repo_root() / "deploy" / "crds")], env)
    run([*kubectl, "wait", "--for=condition=Established", "crd/scheduledjobs.sundial.dev", "--timeout=60s"], env)
    run([*kubectl, "create", "namespace", NAMESPACE], env, check=False)

    step("starting the operator and two workers")
    bin_python = Path(sys.executable).parent
    operator_port = free_port()
    pids["operator"] = spawn([str(bin_python / "sundial-operator"), "--standalone"],
                             {**env, "SUNDIAL_METRICS_PORT": str(operator_port)}, logs / "operator.log").pid
    metrics_ports = [free_port(), free_port()]
    for index, port in enumerate(metrics_ports):
        pids[f"worker-{index}"] = spawn(
            [str(bin_python / "sundial-worker")],
            {**env, "SUNDIAL_WORKER_ID": f"demo-worker-{index}", "SUNDIAL_METRICS_PORT": str(port)},
            logs / f"worker-{index}.log",
        ).pid
    pids["launcher"] = start_launcher(bin_python, env, logs)
    remember()

    step("starting the dashboard")
    dashboard_port = free_port()
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    dashboard = spawn(
        [str(bin_python / "sundial-dashboard")],
        # Token mode: KUBECONFIG gives only the server and CA; each call carries the caller's token.
        {**env, "SUNDIAL_DASHBOARD_HOST": "127.0.0.1", "SUNDIAL_DASHBOARD_PORT": str(dashboard_port),
         "SUNDIAL_DASHBOARD_AUTH": "token", "SUNDIAL_DASHBOARD_DEFAULT_NAMESPACE": NAMESPACE},
        logs / "dashboard.log",
    )
    pids["dashboard"] = dashboard.pid
    remember()

    step("starting the run history API (runs.sundial.dev) and registering its APIService")
    launch = runs_api.prepare(plane, root / "runs-api", postgres.dsn, free_port())
    runs_server = spawn([str(bin_python / "sundial-runs-api")], {**launch.env, **env}, logs / "runs-api.log")
    pids["runs-api"] = runs_server.pid
    remember()
    runs_api.wait_healthy(launch, lambda: runs_server.poll() is None, logs / "runs-api.log")
    runs_api.register(kubectl, env, launch)

    # The policy first: the demo's biz:* targets are not among a namespace's defaults.
    run([*kubectl, "apply", "-f", str(find_repo_root() / "examples" / "policies")], env)
    run([*kubectl, "apply", "-n", NAMESPACE, "-f", str(find_repo_root() / "examples")], env)
    step("waiting for the first runs to be recorded")
    wait_for_runs(postgres.dsn, env, kubectl, logs)
    step("waiting for the dashboard")
    wait_for_ready(dashboard, f"{dashboard_url}/readyz", logs / "dashboard.log")

    env_file = root / "demo.env"
    # Owner-only before the admin token goes in.
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)
    env_file.write_text(
        f"export KUBECONFIG={plane.kubeconfig}\n"
        f"export DATABASE_URL={postgres.dsn}\n"
        f"export REDIS_URL={redis_url}\n"
        f"export PATH={demo_path(bin_dir)}:$PATH\n"
        f"export SUNDIAL_WORKER_METRICS={','.join(f'http://127.0.0.1:{p}/metrics' for p in metrics_ports)}\n"
        f"export SUNDIAL_OPERATOR_METRICS=http://127.0.0.1:{operator_port}/metrics\n"
        f"export SUNDIAL_DASHBOARD_URL={dashboard_url}\n"
        f"export SUNDIAL_DASHBOARD_TOKEN={plane.admin_token}\n"
    )
    print()
    print(run([*kubectl, "get", "scheduledjobs", "-n", NAMESPACE], env).stdout)
    print(f"Sundial is running. Logs: {logs}")
    # The token rides in the fragment: browsers never send it to the server, and the page moves it
    # into sessionStorage and off the address bar at once.
    print(f"Dashboard: {dashboard_url}/agendamentos#token={plane.admin_token}")
    print(f"Use it from your shell:  source {env_file}")
    print(f"  kubectl get sdj -n {NAMESPACE} -w       # watch runs land")
    print(f"  kubectl get scheduledjobruns -n {NAMESPACE}   # run history, RBAC decides (kubectl sundial runs too)")
    print('  curl -H "Authorization: Bearer $SUNDIAL_DASHBOARD_TOKEN" $SUNDIAL_DASHBOARD_URL/api/jobs')
    if redis_variant != "single":
        servers = ", ".join(f"{name} pid {server.process.pid} port {server.port}"
                            for name, server in redis_servers.items() if server.process)
        print(f"Redis {redis_variant}: {servers}")
        print("  try a failover: kill -9 the primary's pid and watch runs go on (docs/reliability.md)")
    print("Stop everything:         make down")
    return 0


def start_launcher(bin_python: Path, env: dict[str, str], logs: Path) -> int:
    """The launcher, which creates the Jobs of jobTemplate jobs (docs/job-targets.md). The demo's
    admin kubeconfig stands in for the chart's least-privilege ServiceAccount; with no kubelet
    the Jobs' pods stay Pending (tests move them to Succeeded or Failed through the API)."""
    launcher_env = {**env, "SUNDIAL_WORKER_ID": "demo-launcher", "SUNDIAL_METRICS_PORT": str(free_port())}
    return spawn([str(bin_python / "sundial-launcher")], launcher_env, logs / "launcher.log").pid


def demo_path(bin_dir: Path) -> str:
    """The control plane's binaries, then this virtualenv's scripts: kubectl finds its plugins
    (`kubectl-sundial`) on PATH, so `kubectl sundial ...` works after `source demo.env`."""
    return os.pathsep.join([str(bin_dir), sysconfig.get_path("scripts")])


def start_redis(root: Path, variant: str) -> tuple[str, dict[str, RedisServer]]:
    """Redis for the demo: one server, a Sentinel set (primary, replica, 3 sentinels) or a
    3-primary Cluster; the URL every process takes, and the servers by name."""
    if variant == "sentinel":
        sentinel_set = RedisSentinelSet(root / "redis-sentinel").start()
        servers = {"redis:primary": sentinel_set.primary, "redis:replica": sentinel_set.replica}
        servers.update({f"redis:sentinel{index}": s for index, s in enumerate(sentinel_set.sentinels)})
        return sentinel_set.url, servers
    if variant == "cluster":
        cluster = RedisClusterSet(root / "redis-cluster").start()
        return cluster.url, {f"redis:node{index}": node for index, node in enumerate(cluster.nodes)}
    single = RedisServer(root / "redis").start()
    return single.url, {"redis": single}


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


def wait_for_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Poll `url` until it answers 200; stop early, with the log's tail, if the process exits."""
    deadline = time.monotonic() + DASHBOARD_READY_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"the dashboard exited with code {code}; last lines of {log}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:200]}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise SystemExit(f"the dashboard was not ready at {url} within {DASHBOARD_READY_TIMEOUT:g}s ({last}); see {log}")


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


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


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
    parser.add_argument("--redis", choices=["single", "sentinel", "cluster"], default="single",
                        help="one Redis server, a Sentinel set or a 3-primary Cluster")
    args = parser.parse_args(argv)
    try:
        return up(args.redis) if args.command == "up" else down()
    except ServiceError as exc:
        raise SystemExit(f"demo: {exc}") from exc


if __name__ == "__main__":
    sys.exit(main())
