"""The `kernel` command line: start a worker, list plugins, show the bootstep graph."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import ParameterSource

from ..client.app import App
from ..client.results import AsyncResult
from ..engine.worker import Worker
from ..errors import KernelError, UsageError
from ..hints import option_owner
from ..manager import plugins_from_env
from ..wire.meta import PENDING
from .banner import core_version, render, step_lines
from .loader import load_app

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# options read before the command line is parsed, because they decide which plugins (and so
# which further options) exist: long and short spellings -> destination
_PRESCAN = {
    "--plugin": "plugin",
    "-p": "plugin",
    "--pool": "pool",
    "-P": "pool",
    "--set": "set",
    "-s": "set",
    "--app": "app",
    "-A": "app",
    "--broker": "broker",
    "-b": "broker",
    "--result-backend": "backend",
}
# the settings a prescanned option sets: the broker URL picks the broker plugin, say
_PRESCAN_SETTINGS = {"pool": "worker_pool", "broker": "broker_url", "backend": "result_backend"}
# seconds `kernel call --wait` without --timeout waits before it checks that a worker consumes
NOTICE_AFTER = 3.0


def _prescan(args: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {name: [] for name in _PRESCAN.values()}
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            if flag in _PRESCAN:
                found[_PRESCAN[flag]].append(value)
        elif arg in _PRESCAN:
            following = next(it, None)
            if following is not None:
                found[_PRESCAN[arg]].append(following)
        elif len(arg) > 2 and arg[:2] in _PRESCAN and not arg.startswith("--"):
            found[_PRESCAN[arg[:2]]].append(arg[2:])
    return found


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-s/--set expects KEY=VALUE, got {pair!r}")
        settings[key.strip()] = value
    return settings


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "-p",
            "--plugin",
            "plugin_args",
            multiple=True,
            metavar="NAME",
            help="Enable a plugin by entry-point name; no:NAME blocks one. Repeatable.",
        ),
        click.option(
            "-s",
            "--set",
            "set_args",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set a setting (checked against the settings plugins declare).",
        ),
        click.option(
            "-A",
            "--app",
            "app_spec",
            default=None,
            metavar="MODULE[:APP]",
            help="The app whose tasks the worker runs, e.g. proj.tasks:app.",
        ),
        click.option(
            "-b",
            "--broker",
            default=None,
            metavar="URL",
            help="Broker URL (overrides the app's broker_url); its scheme picks the plugin.",
        ),
        click.option(
            "--result-backend",
            default=None,
            metavar="URL",
            help="Result backend URL (overrides the app's result_backend).",
        ),
        click.option(
            "-P",
            "--pool",
            default=None,
            metavar="NAME",
            help="Pool that runs tasks: picks plugin pool.NAME (default threads).",
        ),
        click.option(
            "-c",
            "--concurrency",
            type=click.IntRange(min=1),
            default=None,
            help="Pool slots (default: the number of CPUs; 100 for gevent and eventlet).",
        ),
        click.option(
            "-Q",
            "--queues",
            default=None,
            metavar="Q1,Q2",
            help="Queues to consume (default: the default queue).",
        ),
        click.option(
            "-n",
            "--hostname",
            default=None,
            help="Node name (%h: this host, %n: its name, %d: its domain).",
        ),
        click.option(
            "-l",
            "--loglevel",
            default="info",
            show_default=True,
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class PluginCommand(click.Command):
    """A command whose options include those of the plugins enabled on its own command line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        base = ctx.meta.setdefault("kernel.base_params", list(self.params))
        pre = _prescan(args)
        settings: dict[str, Any] = parse_assignments(pre["set"])
        for option, key in _PRESCAN_SETTINGS.items():
            if pre[option]:
                settings[key] = pre[option][-1]  # the last one given wins, as click has it
        app = load_app(pre["app"][-1]) if pre["app"] else None
        worker = Worker(app=app, settings=settings, plugins=[*plugins_from_env(), *pre["plugin"]])
        worker.load_plugins()
        extra = [
            param for _, found in worker.pm.call_each("kernel_cli_options") for param in found or ()
        ]
        self.params = [*base, *extra]
        ctx.meta["kernel.worker"] = worker
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            owner = option_owner(worker.pm, exc.option_name)
            if not owner:
                raise
            message = f"{exc.message} (it belongs to plugin {owner!r}: add --plugin {owner})"
            raise click.NoSuchOption(exc.option_name, message, exc.possibilities, ctx) from None


def _worker(
    ctx: click.Context,
    hostname: str | None,
    loglevel: str,
    concurrency: int | None = None,
    queues: str | None = None,
) -> Worker:
    """The worker prepared while parsing, with the remaining options applied as settings."""
    logging.basicConfig(
        level=loglevel.upper(),
        stream=sys.stderr,
        format="[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    )
    worker: Worker = ctx.meta["kernel.worker"]
    base = {param.name for param in ctx.meta["kernel.base_params"]}
    for name, value in ctx.params.items():
        if name in base:
            continue
        if ctx.get_parameter_source(name) in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        ):
            worker.settings[name] = value
    if hostname:
        worker.settings["worker_hostname"] = hostname
    if concurrency:
        worker.settings["worker_concurrency"] = concurrency
    if queues:
        worker.settings["worker_queues"] = queues
    return worker.build()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(core_version(), prog_name="taskkernel")
def cli() -> None:
    """taskkernel: a distributed task queue whose every capability is a plugin."""


@cli.command(cls=PluginCommand)
@_common
@click.pass_context
def start(
    ctx: click.Context,
    /,
    hostname: str | None,
    loglevel: str,
    concurrency: int | None,
    queues: str | None,
    **_: Any,
) -> int:
    """Start a worker: SIGTERM/SIGINT stop it warmly, a second one or SIGQUIT coldly."""
    worker = _worker(ctx, hostname, loglevel, concurrency, queues)
    click.echo(render(worker))
    sys.stdout.flush()
    return worker.run()


@cli.command(cls=PluginCommand)
@_common
@click.option("--dot", is_flag=True, help="Print the graph in Graphviz DOT.")
@click.pass_context
def graph(
    ctx: click.Context,
    /,
    hostname: str | None,
    loglevel: str,
    concurrency: int | None,
    queues: str | None,
    dot: bool,
    **_: Any,
) -> int:
    """Show the order the worker's steps start in (they stop in reverse)."""
    worker = _worker(ctx, hostname, loglevel, concurrency, queues)
    assert worker.boot is not None
    if dot:
        click.echo(worker.boot.to_dot())
    else:
        click.echo("Steps in start order (stop runs in reverse):")
        for line in step_lines(worker) or ["(no steps)"]:
            click.echo("  " + line)
    return 0


@cli.command(cls=PluginCommand)
@_common
@click.pass_context
def plugins(
    ctx: click.Context,
    /,
    hostname: str | None,
    loglevel: str,
    concurrency: int | None,
    queues: str | None,
    **_: Any,
) -> int:
    """List installed plugins: enabled or not, distribution, version, steps and hooks."""
    worker: Worker = ctx.meta["kernel.worker"]
    pm = worker.pm
    names = sorted({*pm.installed, *(name for name, _ in pm.enabled())})
    if not names:
        click.echo("No plugins installed.")
    for name in names:
        plugin = pm.get_plugin(name)
        origin = pm.origin(name)
        state = (
            "blocked" if pm.is_blocked(name) else "enabled" if plugin is not None else "installed"
        )
        dist = f"{origin.distribution} {origin.version}" if origin else "(registered directly)"
        click.echo(f"{name:<20} {state:<9}  {dist}")
        for line in _describe_plugin(worker, name):
            click.echo(f"    {line}")
    return 0


def _client(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the client commands: which app (or which broker and backend) to talk to."""
    options = [
        click.option(
            "-A",
            "--app",
            "app_spec",
            default=None,
            metavar="MODULE[:APP]",
            help="The app to use (default: an app on the embedded broker).",
        ),
        click.option("-b", "--broker", default=None, help="Broker URL (overrides the app's)."),
        click.option(
            "--backend",
            "--result-backend",
            "backend",
            default=None,
            help="Result backend URL (overrides the app's).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _client_app(app_spec: str | None, broker: str | None, backend: str | None) -> App:
    app = load_app(app_spec) if app_spec else App()
    if broker:
        app.conf.broker_url = broker
    if backend:
        app.conf.result_backend = backend
    return app


def _json_arg(value: str | None, name: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint=name) from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(
            f"expected a JSON {'array' if kind is list else 'object'}", param_hint=name
        )
    return parsed


def _nobody_consumes(app: App, queue: str | None) -> str | None:
    """Why a task sent to `queue` may never run, if the broker can tell: no live worker consumes
    that queue where this client sends it (another directory's embedded file, say)."""
    if queue is None:
        return None
    broker = app.broker
    if broker.consumers(queue) != 0:
        return None
    return f"no worker consumes queue {queue!r} at {broker.location}"


def _show_result(result: AsyncResult, timeout: float | None, queue: str | None = None) -> int:
    from ..wire.exceptions import TimeoutError as ResultTimeout

    try:
        if timeout is None and queue is not None:
            value = _wait_saying_why(result, queue)
        else:
            value = result.get(timeout=timeout, propagate=False)
    except ResultTimeout:
        why = _nobody_consumes(result.app, queue) if result.state == PENDING else None
        click.echo(
            f"{result.id}: no result after {timeout}s (state {result.state})"
            + (f"; {why}" if why else ""),
            err=True,
        )
        return 1
    if result.failed() or result.state == "REVOKED":
        click.echo(f"{result.state}: {value!r}")
        if result.traceback:
            click.echo(result.traceback.rstrip(), err=True)
        return 1
    click.echo(json.dumps(value, default=repr))
    return 0


def _wait_saying_why(result: AsyncResult, queue: str) -> Any:
    """Wait with no time limit, as asked; but if the task is still PENDING after a short while
    and no worker consumes its queue, say so once on stderr, naming where the client sent it.
    Then keep waiting: the message stays queued, and a worker started later runs it."""
    from ..wire.exceptions import TimeoutError as ResultTimeout

    try:
        return result.get(timeout=NOTICE_AFTER, propagate=False)
    except ResultTimeout:
        pass
    why = _nobody_consumes(result.app, queue) if result.state == PENDING else None
    if why:
        click.echo(
            f"Note: task {result.id} is still PENDING: {why}; "
            "still waiting (Ctrl-C to stop; --timeout N gives up)",
            err=True,
        )
    return result.get(timeout=None, propagate=False)


@cli.command()
@_client
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default=None, help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default=None, help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", default=None, help="Queue to send to (default: the routed one).")
@click.option(
    "--countdown", type=float, default=None, help="Run no sooner than N seconds from now."
)
@click.option("--eta", default=None, help="Run no sooner than this ISO-8601 time.")
@click.option("--expires", type=float, default=None, help="Revoke if not started within N seconds.")
@click.option("--priority", type=click.IntRange(0, 255), default=None)
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after N seconds.")
def call(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    task_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    countdown: float | None,
    eta: str | None,
    expires: float | None,
    priority: int | None,
    wait: bool,
    timeout: float | None,
) -> int:
    """Send task TASK by name and print its id (or, with --wait, its result)."""
    from ..wire.protocol import parse_time

    args = _json_arg(args_json, "--args", list)
    kwargs = _json_arg(kwargs_json, "--kwargs", dict)
    app = _client_app(app_spec, broker, backend)
    try:
        when = parse_time(eta, "--eta") if eta else None
    except Exception as exc:
        raise click.BadParameter(str(exc), param_hint="--eta") from None
    options: dict[str, Any] = {
        "queue": queue,
        "countdown": countdown,
        "eta": when,
        "expires": expires,
        "priority": priority,
    }
    result = app.send_task(
        task_name, args, kwargs, **{k: v for k, v in options.items() if v is not None}
    )
    sent_to = app.route(task_name, args, kwargs, queue).get("queue")
    try:
        if wait:
            return _show_result(result, timeout, sent_to)
        click.echo(result.id)
        why = _nobody_consumes(app, sent_to)
        if why:
            click.echo(f"Note: {why}; the task waits there until one does", err=True)
        return 0
    finally:
        app.close()


@cli.command()
@_client
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the task is done.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after N seconds.")
def result(
    app_spec: str | None,
    broker: str | None,
    backend: str | None,
    task_id: str,
    wait: bool,
    timeout: float | None,
) -> int:
    """Print a task's state, and its result once it has one."""
    app = _client_app(app_spec, broker, backend)
    handle = app.AsyncResult(task_id)
    if wait or handle.ready():
        return _show_result(handle, timeout)
    click.echo(handle.state)
    return 0


@cli.command()
@_client
@click.option(
    "-Q",
    "--queues",
    default=None,
    metavar="Q1,Q2",
    help="Queues to purge (default: the default queue).",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(
    app_spec: str | None, broker: str | None, backend: str | None, queues: str | None, force: bool
) -> int:
    """Delete every waiting message from the queues. There is no undo."""
    app = _client_app(app_spec, broker, backend)
    names = (
        [q.strip() for q in queues.split(",") if q.strip()]
        if queues
        else [app.conf.task_default_queue]
    )
    if not force:
        click.confirm(
            f"Delete every waiting task in {', '.join(names)}? There is no undo", abort=True
        )
    count = app.broker.purge(names)
    click.echo(f"Purged {count} message(s) from {', '.join(names)}.")
    app.close()
    return 0


def _describe_plugin(worker: Worker, name: str) -> list[str]:
    from ..graph import StepSpec
    from ..manager import PluginManager

    pm = worker.pm
    plugin = pm.get_plugin(name)
    if plugin is None:
        if pm.is_blocked(name):
            return []
        pm = PluginManager(discover=False)
        try:
            pm.add(worker.pm.installed[name].load(), name)
        except KernelError as exc:
            return [f"cannot load: {exc}"]
        plugin = pm.get_plugin(name)
    lines = []
    try:
        for owner, classes in pm.call_each("kernel_steps"):
            if owner != name:
                continue
            for cls in classes or ():
                spec = StepSpec.of(cls, name)
                roles = f" provides {', '.join(spec.provides)}" if spec.provides else ""
                needs = f" requires {', '.join(spec.requires)}" if spec.requires else ""
                lines.append(f"step {spec.name}:{roles}{needs}".rstrip(":"))
    except Exception as exc:  # a broken plugin is listed as such; the others still are
        lines.append(f"cannot list its steps: {type(exc).__name__}: {exc}")
    hooks = pm.hooks_of(plugin)
    lines.append("hooks: " + (", ".join(hooks) or "(none)"))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: usage mistakes print one line and exit 2, without a traceback."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="kernel", standalone_mode=False
        )
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except KernelError as exc:  # e.g. the broker is unreachable: say so, without a traceback
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    sys.stdout.flush()
    sys.exit(code if isinstance(code, int) else 0)
