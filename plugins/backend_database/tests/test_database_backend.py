"""The database backend passes the contract on SQLite, PostgreSQL and MariaDB, and shares
Celery's tables with Celery's own database backend in both directions."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kernel_backend_database import DatabaseBackend, columns, kernel_result_backend, schema, upsert
from kernel_backend_database import urls as db_urls

from kernel import App
from kernel.plugin import FAILURE, STARTED, SUCCESS, BackendError, ConfigError, Stored, result_meta
from kernel.testing.contracts import BackendContract
from kernel.testing.helpers import require_server

POSTGRESQL = "db+postgresql://postgres@127.0.0.1:5432/test"
MARIADB = "db+mysql://root@127.0.0.1:3306/test"


def sqlite_url(tmp_path: Path) -> str:
    return f"db+sqlite:///{tmp_path}/results.db"  # tmp_path is absolute: four slashes


@pytest.fixture
def postgresql_up() -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)


@pytest.fixture
def mariadb_up() -> None:
    require_server("MariaDB", "127.0.0.1", 3306)


class TestSQLite(BackendContract):
    @pytest.fixture
    def backend_url(self, tmp_path: Path) -> str:
        return sqlite_url(tmp_path)


@pytest.mark.usefixtures("postgresql_up")
class TestPostgreSQL(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return POSTGRESQL


@pytest.mark.usefixtures("mariadb_up")
class TestMariaDB(BackendContract):
    @pytest.fixture
    def backend_url(self) -> str:
        return MARIADB


# -- every database ------------------------------------------------------------------------

# our URL, and the one Celery gets (Celery needs the driver named when MySQLdb is missing)
DATABASES = {
    "sqlite": None,
    "postgresql": (POSTGRESQL, POSTGRESQL),
    "mariadb": (MARIADB, MARIADB.replace("db+mysql://", "db+mysql+pymysql://")),
}


@pytest.fixture(params=sorted(DATABASES))
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "postgresql":
        require_server("PostgreSQL", "127.0.0.1", 5432)
    elif request.param == "mariadb":
        require_server("MariaDB", "127.0.0.1", 3306)
    found = DATABASES[request.param]
    return found if found else (sqlite_url(tmp_path), sqlite_url(tmp_path))


@pytest.fixture
def app(urls: tuple[str, str]) -> Iterator[App]:
    app = App("ours", broker="memory://", backend=urls[0])
    yield app
    app.close()


@pytest.fixture
def backend(app: App) -> DatabaseBackend:
    backend = app.backend
    assert isinstance(backend, DatabaseBackend)
    return backend


def celery_app(url: str, **conf: Any) -> Any:
    import celery

    capp = celery.Celery("theirs", broker="memory://", backend=url)
    capp.conf.update(conf)
    return capp


def put(backend: Any, task_id: str, state: str, result: Any, **fields: Any) -> None:
    meta = result_meta(task_id, state, result, traceback=fields.pop("traceback", None))
    meta.pop("task_id")
    meta.update(fields, task_id=task_id)
    backend.store([Stored(task_id, state, backend.encode(meta))])


def read(backend: Any, task_id: str) -> dict[str, Any]:
    meta = backend.get(task_id)
    assert meta is not None, f"nothing stored for {task_id}"
    return dict(meta)


def new_id() -> str:
    return str(uuid.uuid4())


def test_celery_reads_what_we_store(app: App, urls: tuple[str, str]) -> None:
    ok, bad = new_id(), new_id()
    put(app.backend, ok, SUCCESS, {"sum": [1, 2]})
    put(app.backend, bad, FAILURE, ValueError("bad value 7"), traceback="Traceback ...")
    theirs = celery_app(urls[1])
    assert theirs.AsyncResult(ok).get(timeout=5) == {"sum": [1, 2]}
    with pytest.raises(ValueError, match="bad value 7"):
        theirs.AsyncResult(bad).get(timeout=5)
    assert theirs.AsyncResult(bad).traceback == "Traceback ..."


def test_we_read_what_celery_stores(app: App, urls: tuple[str, str]) -> None:
    ok, bad = new_id(), new_id()
    theirs = celery_app(urls[1])
    theirs.backend.store_result(ok, {"sum": [1, 2]}, SUCCESS)
    theirs.backend.store_result(bad, ValueError("bad value 7"), FAILURE, traceback="TB")
    assert app.AsyncResult(ok).get(timeout=5) == {"sum": [1, 2]}
    with pytest.raises(ValueError, match="bad value 7"):
        app.AsyncResult(bad).get(timeout=5)
    meta = app.backend.get(bad)
    assert meta is not None and meta["traceback"] == "TB"
    assert meta["result"] == {
        "exc_type": "ValueError",
        "exc_message": ["bad value 7"],
        "exc_module": "builtins",
    }
    assert meta["date_done"].endswith("+00:00")


def test_extended_fields_both_ways(app: App, urls: tuple[str, str]) -> None:
    from celery.app.task import Context

    theirs = celery_app(urls[1], result_extended=True)
    mine, celerys = new_id(), new_id()
    put(
        app.backend,
        mine,
        SUCCESS,
        3,
        name="proj.add",
        args=[1, 2],
        kwargs={"z": 0},
        worker="w1@host",
        retries=1,
        queue="q1",
    )
    result = theirs.AsyncResult(mine)
    assert (result.get(timeout=5), result.name, result.args, result.kwargs) == (
        3,
        "proj.add",
        [1, 2],
        {"z": 0},
    )
    assert (result.worker, result.retries, result.queue) == ("w1@host", 1, "q1")

    request = Context(
        id=celerys,
        task="proj.mul",
        args=[2, 5],
        kwargs={},
        hostname="w2@host",
        retries=0,
        delivery_info={"routing_key": "q2"},
    )
    theirs.backend.store_result(celerys, 10, SUCCESS, request=request)
    meta = app.backend.get(celerys)
    assert meta is not None
    assert list(meta) == [
        "status",
        "result",
        "traceback",
        "children",
        "date_done",
        "name",
        "args",
        "kwargs",
        "worker",
        "retries",
        "queue",
        "task_id",
    ]
    assert (meta["name"], meta["args"], meta["kwargs"], meta["queue"]) == (
        "proj.mul",
        [2, 5],
        {},
        "q2",
    )


def test_success_survives_concurrent_late_duplicates(backend: DatabaseBackend) -> None:
    ids = [new_id() for _ in range(20)]
    errors: list[BaseException] = []

    def write(state: str) -> None:
        try:
            for task_id in ids:
                result: Any = ValueError("late") if state == FAILURE else task_id
                put(backend, task_id, state, result)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=write, args=(SUCCESS,))
    first.start()
    first.join()
    threads = [threading.Thread(target=write, args=(s,)) for s in (FAILURE, STARTED) * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert all(read(backend, i)["status"] == SUCCESS for i in ids)


def test_a_batch_keeps_the_same_rule(backend: DatabaseBackend) -> None:
    done, failed = new_id(), new_id()
    batch = [
        Stored(done, STARTED, backend.encode(result_meta(done, STARTED, None))),
        Stored(done, SUCCESS, backend.encode(result_meta(done, SUCCESS, 1))),
        Stored(done, FAILURE, backend.encode(result_meta(done, FAILURE, ValueError("x")))),
        Stored(failed, STARTED, backend.encode(result_meta(failed, STARTED, None))),
        Stored(failed, FAILURE, backend.encode(result_meta(failed, FAILURE, KeyError("k")))),
    ]
    backend.store(batch)
    assert read(backend, done)["result"] == 1
    assert read(backend, failed)["status"] == FAILURE


def test_the_portable_write_never_replaces_success(backend: DatabaseBackend) -> None:
    task_id = new_id()
    engine = backend._connect()

    def write(state: str, result: Any) -> None:
        meta = result_meta(task_id, state, result)
        row = columns.to_row(task_id, meta, backend._dumps)
        with engine.begin() as conn:
            upsert.guarded(conn, schema.tasks, [row])

    write(STARTED, None)
    assert read(backend, task_id)["status"] == STARTED
    write(SUCCESS, 5)
    write(FAILURE, ValueError("late"))
    assert read(backend, task_id)["result"] == 5


def test_children_and_stamps_round_trip(backend: DatabaseBackend) -> None:
    task_id = new_id()
    children = [[[new_id(), None], None]]
    put(backend, task_id, STARTED, None, stamped_headers=["on"], on="yes")
    put(backend, task_id, SUCCESS, 1, children=children)
    meta = backend.get(task_id)
    assert meta is not None
    assert meta["children"] == children
    assert (meta["stamped_headers"], meta["on"]) == (["on"], "yes")  # kept, as Celery keeps them


def test_a_forked_child_gets_its_own_engine(backend: DatabaseBackend) -> None:
    before = new_id()
    put(backend, before, SUCCESS, "parent")
    parent_engine = backend._connect()
    child_id = new_id()

    def child() -> None:
        put(backend, child_id, SUCCESS, "child")
        assert read(backend, before)["result"] == "parent"
        assert backend._connect() is not parent_engine

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    # the parent's pooled connections were left alone by the child
    assert backend._connect() is parent_engine
    assert read(backend, child_id)["result"] == "child"


def test_expired_rows_read_as_gone_and_are_swept(urls: tuple[str, str]) -> None:
    app = App(broker="memory://", backend=urls[0], result_expires=1)
    backend = app.backend
    assert isinstance(backend, DatabaseBackend)
    old, fresh = new_id(), new_id()
    put(backend, old, SUCCESS, 1)
    put(backend, fresh, SUCCESS, 2)
    engine = backend._connect()
    with engine.begin() as conn:  # make one of them two minutes old
        conn.execute(
            sa.update(schema.tasks)
            .where(schema.tasks.c.task_id == old)
            .values(date_done=backend._cutoff() - timedelta(minutes=2))
        )
    assert backend.get(old) is None and backend.get(fresh) is not None
    backend._next_sweep = 0.0  # sweeps run now and then; make the next store sweep
    put(backend, new_id(), SUCCESS, 3)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(schema.tasks.c.task_id.in_([old, fresh]))
        assert conn.execute(query).scalar() == 1
    app.close()


# -- SQLite only ---------------------------------------------------------------------------


def test_a_worker_stores_results_celery_reads(tmp_path: Path) -> None:
    from kernel import Worker

    url = sqlite_url(tmp_path)
    app = App("proj", broker=f"embedded:///{tmp_path}/broker.db", backend=url)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app=app, settings={"worker_pool": "solo"})
    worker.start()
    try:
        result = add.delay(2, 3)
        assert result.get(timeout=20) == 5
        assert celery_app(url).AsyncResult(result.id).get(timeout=5) == 5
    finally:
        worker.stop()
        app.close()


@pytest.mark.parametrize(
    ("serializer", "accept", "readable"),
    [
        ("pickle", ["pickle", "json"], True),
        ("json", ["json", "pickle"], True),  # pickle accepted, though not what we write
        ("json", ["json"], False),
    ],
)
def test_pickled_exceptions_from_celery(
    tmp_path: Path, serializer: str, accept: list[str], readable: bool
) -> None:
    url = sqlite_url(tmp_path)
    theirs = celery_app(url, result_serializer="pickle", result_accept_content=["pickle"])
    task_id = new_id()
    theirs.backend.store_result(task_id, ValueError("pickled"), FAILURE)
    app = App(
        broker="memory://", backend=url, result_serializer=serializer, result_accept_content=accept
    )
    try:
        if not readable:
            with pytest.raises(BackendError, match="cannot decode the result"):
                app.backend.get(task_id)
            return
        assert read(app.backend, task_id)["result"]["exc_type"] == "ValueError"
        with pytest.raises(ValueError, match="pickled"):
            app.AsyncResult(task_id).get(timeout=5)
    finally:
        app.close()


def test_celerys_wrapper_for_unpicklable_exceptions_names_the_original() -> None:
    from celery.utils.serialization import UnpickleableExceptionWrapper

    wrapped = UnpickleableExceptionWrapper("proj.errors", "Broken", ("why",))
    assert columns.exception_document(wrapped) == {
        "exc_type": "Broken",
        "exc_message": ["why"],
        "exc_module": "proj.errors",
    }


def test_adds_columns_a_table_from_an_older_celery_lacks(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    engine = sa.create_engine(url[3:])
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE celery_taskmeta (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "task_id VARCHAR(155) UNIQUE, status VARCHAR(50), result BLOB, "
            "date_done DATETIME, traceback TEXT)"
        )
    engine.dispose()
    app = App(broker="memory://", backend=url, result_extended=True)
    task_id = new_id()
    put(
        app.backend,
        task_id,
        SUCCESS,
        1,
        name="t",
        args=[],
        kwargs={},
        worker="w",
        retries=0,
        queue="q",
    )
    assert read(app.backend, task_id)["name"] == "t"
    app.close()


# -- URLs and errors -----------------------------------------------------------------------


def test_only_db_urls_are_ours() -> None:
    app = App(broker="memory://")
    assert kernel_result_backend(url="redis://localhost/0", app=app) is None
    assert kernel_result_backend(url="dbx://h", app=app) is None


def test_plain_dialects_use_the_drivers_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_urls, "_default_installed", lambda url: False)
    monkeypatch.setattr(db_urls, "_installed", lambda module: module in ("pymysql", "psycopg"))
    assert db_urls.sqlalchemy_url(MARIADB).drivername == "mysql+pymysql"
    assert db_urls.sqlalchemy_url(POSTGRESQL).drivername == "postgresql+psycopg"
    assert db_urls.sqlalchemy_url("db+mysql+mysqldb://h/x").drivername == "mysql+mysqldb"
    assert db_urls.sqlalchemy_url("db+sqlite:///x.db").drivername == "sqlite"


def test_a_url_without_a_scheme_is_a_bad_url_naming_the_setting() -> None:
    app = App(broker="memory://", backend="db+not a url")
    with pytest.raises(ConfigError, match=r"setting 'result_backend': bad URL 'db\+not a url'"):
        app.AsyncResult("x").state  # noqa: B018


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("db+postgresql://postgres:secret@127.0.0.1:1/test", "127.0.0.1:1"),
        ("db+mysql://root:secret@127.0.0.1:1/test", "127.0.0.1:1"),
        ("db+sqlite:////nonexistent/dir/results.db", "/nonexistent/dir/results.db"),
        ("db+nosuchdialect://h/x", "nosuchdialect"),
    ],
)
def test_bad_or_unreachable_urls_are_one_line(url: str, expected: str) -> None:
    app = App(broker="memory://", backend=url)
    with pytest.raises(BackendError) as info:
        app.AsyncResult("x").state  # noqa: B018
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert "secret" not in message and "sqlalche.me" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
