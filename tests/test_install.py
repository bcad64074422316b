"""ajq installs as one package, `ajq`, and an app with its own client/worker/broker/protocol modules uses it.

The wheel is built once from a copy of the repository (no build isolation: setuptools comes with
the test extras), so these tests read what `pip install .` would put into site-packages.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ajq
from ajq import AsyncClient, Client
from tests.harness import REPO, BrokerHandle, Proc, registered, wait_for
from tests.layout import PARTS

BARE = frozenset(PARTS)  # names an app may own: ajq must never import them
SOURCE_DIRS = ("ajq", *PARTS, "tests", "bench", "examples")
SKIP = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "*.db*", ".*_cache", "results")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds, from a copy of the tree so the checkout stays clean."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(src)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    (built,) = tmp.glob("ajq-*.whl")
    return built


@pytest.mark.timeout(300)
def test_the_wheel_installs_only_ajq(wheel: Path) -> None:
    # Given the wheel, When its files are listed, Then everything is under ajq/ or its dist-info.
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"ajq", f"ajq-{ajq.__version__}.dist-info"}, tops
    # And every part is inside, with the spec and the typing marker.
    for path in ("ajq/__init__.py", "ajq/py.typed", "ajq/protocol/SPEC.md", "ajq/broker/store/tasks.py",
                 "ajq/worker/supervisor.py", "ajq/client/cli.py"):  # fmt: skip
        assert path in names, path
    entry_points = zipfile.ZipFile(wheel).read(f"ajq-{ajq.__version__}.dist-info/entry_points.txt").decode()
    for script in ("ajbroker = ajq.broker.cli:main", "ajworker = ajq.worker.cli:main", "ajc = ajq.client.cli:main"):
        assert script in entry_points


@pytest.mark.timeout(300)
def test_a_users_code_is_mypy_strict_clean_against_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    # Given the wheel installed in a fresh environment (PEP 561: mypy reads it through py.typed)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = next(env_dir.glob("lib/python*/site-packages"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    app = tmp_path / "app"
    app.mkdir()
    (app / "tasks.py").write_text(USER_CODE)
    # When mypy --strict checks an app written against the public API
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
           str(env_dir / "bin" / "python"), "tasks.py"]  # fmt: skip
    run = subprocess.run(cmd, cwd=app, capture_output=True, text=True, timeout=240)
    # Then it is clean: the API is typed, and ajq is found as an installed, typed package.
    assert run.returncode == 0, run.stdout + run.stderr


USER_CODE = textwrap.dedent(
    """
    from datetime import UTC, datetime, timedelta

    from ajq import (
        RETRY_LINEAR_ONE_MINUTE, AsyncClient, Client, ClientError, RetryPolicy, Router, Submitted, Task,
        TaskInfo, TerminateTask,
    )

    router = Router(retry=RetryPolicy([1.0, 5.0], jitter=0.5))


    @router.handler("email:new")
    def send(task: Task) -> str:
        if "to" not in task.payload:
            raise TerminateTask("no 'to'")
        return "sent"


    def submit(c: Client) -> TaskInfo:
        first: Submitted = c.submit("email:new", {"to": "a@example.com"}, delay=timedelta(seconds=1))
        c.submit("email:new", {}, depends_on=[first], deadline=datetime.now(UTC) + timedelta(minutes=5))
        try:
            return c.wait(first.id, timeout=30)
        except ClientError as exc:
            raise SystemExit(str(exc)) from exc


    async def submit_async(c: AsyncClient) -> list[str]:
        await c.pause_queue("EMAIL")
        return await c.submit_many([("email:new", {"to": "b@example.com"})], queue="EMAIL")


    POLICY = RETRY_LINEAR_ONE_MINUTE
    """
)


def test_version_is_the_distributions() -> None:
    from importlib.metadata import version

    assert ajq.__version__ == version("ajq")


def test_every_name_a_user_writes_comes_from_ajq() -> None:
    # Given the list of what a user imports, Then `ajq` has each, and __all__ is true.
    wanted = ["Client", "AsyncClient", "Router", "Task", "TerminateTask", "RetryPolicy", "RETRY_LINEAR_ONE_MINUTE",
              "RETRY_SIDEKIQ", "Submitted", "TaskInfo", "QueueInfo", "WorkerInfo", "CronInfo", "TaskState"]  # fmt: skip
    assert [name for name in wanted if not hasattr(ajq, name)] == []
    assert all(hasattr(ajq, name) for name in ajq.__all__)
    assert sorted(ajq._HOME) == sorted(set(ajq.__all__) - {"__version__"})
    # And every exception of the client is exported.
    from ajq.client import errors

    exported = [getattr(ajq, n) for n in ajq.__all__]
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, Exception) and cls.__module__ == errors.__name__:
            assert cls in exported, cls.__name__


def _modules() -> list[str]:
    """Every module of ajq by its dotted name, from the folders it is built from."""
    names = ["ajq"]
    for part in PARTS:
        for path in sorted((REPO / part).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("").parts
            if rel[-1] == "__main__":
                continue  # runs the command on import
            names.append(".".join(("ajq", *(rel[:-1] if rel[-1] == "__init__" else rel))))
    return names


def test_no_two_classes_of_ajq_share_a_name() -> None:
    # Given every class defined in ajq, Then no name is used twice (one error tree per part).
    seen: dict[str, str] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue
            assert cls_name not in seen or seen[cls_name] == name, f"{cls_name} in {seen.get(cls_name)} and {name}"
            seen[cls_name] = name


@pytest.mark.parametrize("folder", SOURCE_DIRS)
def test_nothing_imports_a_bare_part_name(folder: str) -> None:
    # Given every Python file of the project, Then none imports client/worker/broker/protocol bare.
    offenders = []
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in BARE]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "module, not_loaded",
    [("ajq.broker.server", ("ajq.client", "ajq.worker")), ("ajq.worker.supervisor", ("ajq.client", "ajq.broker")),
     ("ajq.client", ("ajq.worker", "ajq.broker"))],
)  # fmt: skip
def test_each_part_loads_without_the_others(module: str, not_loaded: tuple[str, ...]) -> None:
    # When one part is imported in a fresh interpreter, Then the public ajq package loads no other part.
    code = f"import importlib, sys; importlib.import_module({module!r}); import ajq; print(sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    loaded = set(ast.literal_eval(run.stdout))
    assert not loaded & set(not_loaded)


def test_importing_all_of_ajq_loads_no_bare_part() -> None:
    # When every module is imported in a fresh interpreter, Then none is loaded under a bare name.
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in _modules())
    code += f"print(sorted(m for m in sys.modules if m.split('.')[0] in {set(BARE)!r}))"
    run = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def _signatures(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_async_client_has_every_call_of_client_with_the_same_arguments() -> None:
    sync, aio = _signatures(Client), _signatures(AsyncClient)
    assert sorted(sync) == sorted(aio)
    for name, signature in sync.items():
        assert aio[name] == signature, f"{name}: Client{signature} but AsyncClient{aio[name]}"
        if name != "close":
            assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name


# -- an app that owns the common names -------------------------------------------------------

APP_MODULES = {
    "client.py": 'NAME = "the app\'s client"\n',
    "worker.py": 'NAME = "the app\'s worker"\n',
    "broker.py": 'NAME = "the app\'s broker"\n',
    "protocol.py": 'GREETING = "hello from the app\'s protocol"\n',
    "tasks.py": textwrap.dedent(
        """
        import importlib

        from protocol import GREETING

        # The app's own top-level modules, named like ajq's parts: ajq must not shadow them.
        broker, client, worker = (importlib.import_module(name) for name in ("broker", "client", "worker"))

        from ajq import Router

        router = Router()


        @router.handler("greet")
        def greet(task):
            return [GREETING, client.NAME, worker.NAME, broker.NAME, task.payload]
        """
    ),
    "submit.py": textwrap.dedent(
        """
        import json
        import sys

        import client  # the app's own, beside ajq's Client
        from ajq import Client

        with Client(sys.argv[1]) as c:
            t = c.submit("greet", client.NAME)
            print(json.dumps(c.wait(t.id, timeout=30).result))
        """
    ),
}


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    app = tmp_path / "myapp"
    app.mkdir()
    for name, text in APP_MODULES.items():
        (app / name).write_text(text)
    yield app


@pytest.mark.timeout(60)
def test_an_app_with_its_own_client_worker_broker_and_protocol_modules_runs(
    broker: BrokerHandle, app_dir: Path, procs: list[Proc]
) -> None:
    # Given ajworker started as a user starts it: the console script, from the app's directory
    ajworker = str(Path(sys.executable).parent / "ajworker")
    args = [ajworker, "--broker", broker.endpoint, "--procs", "1", "tasks:router"]
    worker = Proc(args, app_dir.parent / "worker.log", app_dir.parent, cwd=app_dir, repo_on_path=False).start()
    procs.append(worker)
    c = broker.client()
    wait_for(lambda: registered(c, worker.pid) or (not worker.alive() and worker.tail()), 15, "the worker")
    assert worker.alive(), worker.tail()
    # When a script in that directory submits with `from ajq import Client`
    submit = [sys.executable, "submit.py", broker.endpoint]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(submit, cwd=app_dir, capture_output=True, text=True, timeout=45, env=env)
    # Then the task completes, its handler having used the app's own four modules.
    assert run.returncode == 0, run.stderr + worker.tail()
    assert run.stdout.strip() == (
        '["hello from the app\'s protocol", "the app\'s client", "the app\'s worker", "the app\'s broker", '
        '"the app\'s client"]'
    )
