"""iotbutton's benchmarks: start-up, bulk provisioning and teardown, the AWS rate ceiling, clicks.

    python benchmarks/run.py            # the full run (about 20 minutes on 2 cores)
    python benchmarks/run.py --quick    # fewer repetitions (about 4 minutes)
    nox -s benchmarks [-- --quick]

Prints a Markdown table (medians over repeated runs, with min and max; comparisons are ratios of
medians measured in the same run, alternating the two commands) and writes every number to
benchmarks/results/latest.json. Everything runs on loopback in temporary IOTBUTTON_HOME folders:
a sandbox started and stopped with the CLI, a moto server, and benchmarks/awsproxy.py in front of
it to add 100 ms of latency per request and AWS-style throttling. No AWS account is used.
"""

# ruff: noqa: RUF001 - the table uses typographic signs (multiplication, en dash)
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from awsproxy import AwsProxy  # noqa: E402

PYTHON = sys.executable
IOTBUTTON = shutil.which("iotbutton", path=str(Path(PYTHON).parent)) or "iotbutton"
SEQUENTIAL = str(HERE / "sequential.py")
RESULTS = HERE / "results"
LATENCY = 0.100
RATE = 10.0
TWILIO_SECRET = "bench-secret-only-the-sandbox-sees"
MUTATING = re.compile(
    r"^(Create|Put|Update|Delete|Attach|Detach|Add|Remove|Tag|Untag|Replace|Set|Enable|Disable|"
    r"Publish|Invoke|Deprecate|Register|Associate|Disassociate)"
)
AWS_CALL = re.compile(r"AWS ([\w-]+):(\w+) -> HTTP (\d+)")


# --- measuring ------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
        "values": [round(v, 4) for v in values],
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = fraction * (len(ordered) - 1)
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


CPU_SECONDS: dict[str, list[float]] = {}  # label → CPU seconds (user + system) of each run


def run(
    command: list[str], env: dict[str, str], check: bool = True, label: str = ""
) -> tuple[float, Any]:
    """Wall time of ``command``; with ``label``, its CPU time is kept in CPU_SECONDS too."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU_SECONDS.setdefault(label, []).append(cpu)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        )
    return elapsed, result


def in_turn(
    first: Callable[[], float], second: Callable[[], float], rep: int
) -> tuple[float, float]:
    """One run of each, the first one first on even repetitions and second on odd ones."""
    if rep % 2 == 0:
        a = first()
        return a, second()
    b = second()
    return first(), b


def alternate(
    first: Callable[[], float], second: Callable[[], float], reps: int
) -> tuple[list[float], list[float]]:
    """Run the two in turns (ABBA...), so drift and caches hit both alike."""
    a, b = [], []
    for rep in range(reps):
        x, y = in_turn(first, second, rep)
        a.append(x)
        b.append(y)
    return a, b


@dataclass
class Row:
    name: str
    figure: dict[str, Any] | None = None  # summary() of seconds, or None for a plain value
    unit: str = "s"
    value: str = ""  # shown instead of the figure
    versus: str = ""
    versus_figure: dict[str, Any] | None = None
    versus_note: str = ""
    ratio: float | None = None
    ratio_text: str = ""
    target: str = ""
    met: bool | None = None
    notes: str = ""


@dataclass
class Report:
    quick: bool
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.name}: {cell(row)}" + (f"  ratio {row.ratio:.2f}" if row.ratio else ""))
        return row


def cpu_pair(first: str, second: str) -> tuple[float, float]:
    """Median CPU seconds of two labelled commands."""
    return statistics.median(CPU_SECONDS[first]), statistics.median(CPU_SECONDS[second])


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def cell(row: Row) -> str:
    if row.value:
        return row.value
    if row.figure is None:
        return ""
    low, mid, high = row.figure["min"], row.figure["median"], row.figure["max"]
    if row.unit == "s":
        return f"{seconds(mid)} ({seconds(low)} – {seconds(high)})"
    return f"{mid:.1f} {row.unit} ({low:.1f} – {high:.1f})"


def markdown(report: Report, machine: dict[str, Any]) -> str:
    lines = [
        f"Measured {machine['date']} on {machine['cpus']} CPU cores ({machine['cpu']}), "
        f"{machine['os']}, Python {machine['python']}, boto3 {machine['boto3']}, "
        f"moto {machine['moto']}{' (--quick)' if report.quick else ''}; 1-minute load average "
        f"{machine['load_average_at_start']} at the start, {machine['load_average_at_end']} at the "
        "end. "
        "Median (min – max) over the runs shown; ratios are of medians from the same run.",
        "",
        "| measurement | median (min – max) | compared with | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report.rows:
        versus = row.versus
        if row.versus_figure is not None:
            versus += f" {seconds(row.versus_figure['median'])}"
        if row.versus_note:
            versus += f" ({row.versus_note})"
        ratio = row.ratio_text or (f"{row.ratio:.2f} ×" if row.ratio is not None else "")
        mark = {True: "✅ ", False: "❌ ", None: ""}[row.met]
        target = f"{mark}{row.target}" if row.target else ""
        name = row.name + (f" ({row.notes})" if row.notes else "")
        lines.append(f"| {name} | {cell(row)} | {versus} | {ratio} | {target} |")
    return "\n".join(lines)


# --- environments ---------------------------------------------------------------------------


def base_env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "IOTBUTTON_", "TWILIO_"))
    }
    empty = home.parent / "aws-config-empty"
    empty.write_text("")
    env.update(
        IOTBUTTON_HOME=str(home),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        NO_COLOR="1",
        COLUMNS="120",
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(scratch: Path, with_fixes: bool = False) -> Iterator[str]:
    """A standalone moto server in its own process, as `moto_server` would run it (or, with
    ``with_fixes``, with the sandbox's fixes: see moto_with_fixes.py); its pid is
    MOTO_PIDS[url]."""
    port = free_port()
    log = open(scratch / f"moto-{port}.log", "wb")  # noqa: SIM115 - closed below
    program = [str(HERE / "moto_with_fixes.py")] if with_fixes else ["-m", "moto.server"]
    process = subprocess.Popen(
        [PYTHON, *program, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    MOTO_PIDS[url] = process.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


MOTO_PIDS: dict[str, int] = {}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


@contextlib.contextmanager
def sandbox(home: Path) -> Iterator[dict[str, Any]]:
    env = base_env(home)
    run([IOTBUTTON, "sandbox", "start"], env)
    try:
        _, status = run([IOTBUTTON, "sandbox", "status", "--json"], env)
        yield json.loads(status.stdout)
    finally:
        run([IOTBUTTON, "sandbox", "stop"], env, check=False)


def fresh_home(scratch: Path, name: str) -> Path:
    home = scratch / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def proxied_run_env(
    scratch: Path, name: str, moto_url: str, proxy: AwsProxy, url: str, **extra: str
) -> dict[str, str]:
    """A fresh start for one run behind ``proxy``: moto emptied, the proxy's records and buckets
    cleared, a new home, and the environment that sends iotbutton through the proxy at ``url``."""
    reset_moto(moto_url)
    proxy.clear()
    return {**base_env(fresh_home(scratch, name)), "AWS_ENDPOINT_URL": url, **extra}


# --- the benchmarks ---------------------------------------------------------------------------


def bench_startup(report: Report, scratch: Path, moto_url: str, reps: int) -> None:
    print("start-up")
    home = fresh_home(scratch, "startup")
    env = base_env(home)
    list_env = {**env, "AWS_ENDPOINT_URL": moto_url}
    complete_env = {
        **env,
        "_IOTBUTTON_COMPLETE": "complete_bash",
        "COMP_WORDS": "iotbutton things cr",
        "COMP_CWORD": "2",
    }

    def timed(command: list[str], environment: dict[str, str]) -> Callable[[], float]:
        return lambda: run(command, environment)[0]

    help_ = timed([IOTBUTTON, "--help"], env)
    group_help = timed([IOTBUTTON, "things", "--help"], env)
    things_list = timed([IOTBUTTON, "things", "list", "--json"], list_env)
    boto3 = timed([PYTHON, "-c", "import boto3"], env)
    complete = timed([IOTBUTTON], complete_env)
    for warm in (help_, group_help, things_list, boto3, complete):
        warm()  # page cache and bytecode, not counted

    def compare(
        name: str,
        first: Callable[[], float],
        second: Callable[[], float],
        versus: str,
        key: str,
        labels: tuple[str, str],
        limit: float | None = None,
    ) -> None:
        """``first`` against ``second``, alternated; a row, and both summaries under ``key``."""
        a, b = alternate(first, second, reps)
        ratio = statistics.median(a) / statistics.median(b)
        report.add(
            Row(
                name,
                summary(a),
                versus=versus,
                versus_figure=summary(b),
                ratio=ratio,
                target=f"≤ {limit} ×" if limit else "",
                met=ratio <= limit if limit else None,
            )
        )
        report.data[key] = {labels[0]: summary(a), labels[1]: summary(b)}

    import_boto3 = '`python -c "import boto3"`'
    compare(
        "`iotbutton --help`",
        help_,
        boto3,
        import_boto3,
        "startup_help",
        ("iotbutton_help", "import_boto3"),
        0.5,
    )
    compare(
        "`iotbutton things --help`",
        group_help,
        help_,
        "`iotbutton --help`",
        "startup_group_help",
        ("things_help", "help"),
        1.3,
    )
    compare(
        "`iotbutton things list --json` (empty registry, account remembered: no AWS SDK)",
        things_list,
        boto3,
        import_boto3,
        "startup_things_list",
        ("things_list", "import_boto3"),
        1.2,
    )
    times = [complete() for _ in range(reps)]
    report.add(Row("shell completion (`iotbutton things cr<TAB>`)", summary(times)))
    report.data["startup_completion"] = summary(times)
    report.data["startup_imports"] = import_profile()


def import_profile() -> dict[str, Any]:
    """`python -X importtime` of the CLI module: total, and the heaviest top-level packages."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "from iotbutton_cli.cli.app import app"],
        capture_output=True,
        text=True,
        check=True,
    )
    packages: dict[str, int] = {}
    total = 0
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        self_us, cumulative, indent, name = match.groups()
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0) + int(self_us)
        if len(indent) == 1:
            total += int(cumulative)
    heaviest = sorted(packages.items(), key=lambda item: -item[1])[:8]
    profile = {
        "total_ms": round(total / 1000, 1),
        "by_package_ms": {k: round(v / 1000, 1) for k, v in heaviest},
    }
    print(f"  import of iotbutton_cli.cli.app: {profile}")
    return profile


def iotbutton_create(global_args: list[str], count: int, env: dict[str, str]) -> float:
    label = f"iotbutton create {' '.join(global_args)}"
    elapsed, result = run(
        [IOTBUTTON, *global_args, "things", "create", "--count", str(count), "--json"],
        env,
        label=label,
    )
    created = json.loads(result.stdout)["buttons"]
    assert sum(b["action"] == "created" for b in created) == count, result.stdout[-500:]
    return elapsed


def iotbutton_clean(global_args: list[str], env: dict[str, str]) -> float:
    label = f"iotbutton clean {' '.join(global_args)}"
    elapsed, result = run([IOTBUTTON, *global_args, "clean", "--yes", "--json"], env, label=label)
    assert json.loads(result.stdout)["complete"], result.stdout[-500:]
    return elapsed


def loop_provision(url: str, count: int, prefix: str, manifest: Path, env: dict[str, str]) -> float:
    command = [PYTHON, SEQUENTIAL, "--endpoint-url", url, "provision", str(count), prefix]
    return run([*command, str(manifest)], env, label=f"loop provision {url}")[0]


def loop_teardown(url: str, manifest: Path, env: dict[str, str]) -> float:
    command = [PYTHON, SEQUENTIAL, "--endpoint-url", url, "teardown", str(manifest)]
    return run(command, env, label=f"loop teardown {url}")[0]


def compare_bulk(
    global_args: list[str],
    url: str,
    count: int,
    rep: int,
    env: dict[str, str],
    loop_env: dict[str, str],
    manifest: Path,
) -> tuple[float, float, float, float]:
    """(iotbutton create, loop create, iotbutton clean, loop teardown), each pair in turn."""
    create, loop = in_turn(
        partial(iotbutton_create, global_args, count, env),
        partial(loop_provision, url, count, f"LOOP{rep}X", manifest, loop_env),
        rep,
    )
    clean, unloop = in_turn(
        partial(iotbutton_clean, global_args, env),
        partial(loop_teardown, url, manifest, loop_env),
        rep,
    )
    return create, loop, clean, unloop


def bench_sandbox_bulk(
    report: Report, home: Path, info: dict[str, Any], reps: int, count: int
) -> None:
    print(f"bulk: {count} buttons in the sandbox")
    env = base_env(home)
    # The sandbox accepts only its own key pair (sandbox status --json shows it).
    loop_env = {
        **env,
        "AWS_ACCESS_KEY_ID": info["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": info["secret_access_key"],
    }
    runs = [
        compare_bulk(
            ["--sandbox"],
            info["aws_url"],
            count,
            rep,
            env,
            loop_env,
            home.parent / f"sandbox-loop-{rep}.json",
        )
        for rep in range(reps)
    ]
    create_a, create_b, clean_a, clean_b = (list(column) for column in zip(*runs, strict=True))
    url = info["aws_url"]
    for name, a, b, key, cpu in (
        (
            f"`things create --count {count}` (sandbox)",
            create_a,
            create_b,
            "sandbox_create",
            cpu_pair("iotbutton create --sandbox", f"loop provision {url}"),
        ),
        (
            f"`clean` of {count} buttons (sandbox)",
            clean_a,
            clean_b,
            "sandbox_clean",
            cpu_pair("iotbutton clean --sandbox", f"loop teardown {url}"),
        ),
    ):
        ratio = statistics.median(b) / statistics.median(a)
        report.add(
            Row(
                name,
                summary(a),
                versus="sequential boto3 loop",
                versus_figure=summary(b),
                versus_note=f"CPU {cpu[0]:.1f} s vs {cpu[1]:.1f} s",
                ratio=ratio,
                ratio_text=f"{ratio:.2f} × faster",
                target="≥ 2 × faster",
                met=ratio >= 2,
            )
        )
        report.data[key] = {
            "iotbutton": summary(a),
            "sequential_loop": summary(b),
            "speedup": ratio,
            "cpu_s": {"iotbutton": cpu[0], "sequential_loop": cpu[1]},
        }


def bench_latency(report: Report, scratch: Path, moto_url: str, reps: int, count: int) -> None:
    """100 ms per request, AWS's default limits in iotbutton (as against AWS), no throttling."""
    print(f"bulk: {count} buttons with {LATENCY * 1000:.0f} ms per request")
    proxy = AwsProxy(moto_url, latency=LATENCY)
    url = proxy.start()
    runs = []
    try:
        for rep in range(reps):
            env = proxied_run_env(
                scratch, f"latency-{rep}", moto_url, proxy, url, IOTBUTTON_RATE_LIMITER="on"
            )
            manifest = scratch / f"latency-loop-{rep}.json"
            runs.append(compare_bulk([], url, count, rep, env, env, manifest))
        throttled = proxy.throttled()
    finally:
        proxy.stop()
    create_a, create_b, clean_a, clean_b = (list(column) for column in zip(*runs, strict=True))
    for name, a, b, key, target in (
        (
            f"`things create --count {count}`, 100 ms latency",
            create_a,
            create_b,
            "latency_create",
            4,
        ),
        (f"`clean` of {count} buttons, 100 ms latency", clean_a, clean_b, "latency_clean", None),
    ):
        ratio = statistics.median(b) / statistics.median(a)
        report.add(
            Row(
                name,
                summary(a),
                versus="sequential boto3 loop",
                versus_figure=summary(b),
                ratio=ratio,
                ratio_text=f"{ratio:.2f} × faster",
                target=f"≥ {target} × faster" if target else "",
                met=(ratio >= target) if target else None,
            )
        )
        report.data[key] = {
            "iotbutton": summary(a),
            "sequential_loop": summary(b),
            "speedup": ratio,
            "latency_s": LATENCY,
            "rate_limiter": "on, AWS default limits",
            "throttled": throttled,
        }


def bench_rate_ceiling(
    report: Report, scratch: Path, moto_url: str, reps: int, count: int, contrast: bool
) -> None:
    """100 ms latency and every IoT operation throttled at 10/s, as AWS would."""
    print(f"rate ceiling: {count} buttons, {LATENCY * 1000:.0f} ms per request, {RATE:g}/s per API")
    proxy = AwsProxy(moto_url, latency=LATENCY, default_limit=RATE)
    url = proxy.start()
    ops = (
        "DescribeThing",
        "CreateThing",
        "CreateCertificateFromCsr",
        "AttachPolicy",
        "AttachThingPrincipal",
    )
    clean_ops = (
        "DescribeCertificate",
        "DetachPolicy",
        "UpdateCertificate",
        "DetachThingPrincipal",
        "DeleteCertificate",
        "DeleteThing",
    )
    results: dict[str, Any] = {}
    try:
        modes = [("on", reps)] + ([("off", 1)] if contrast else [])
        for limiter, runs in modes:
            times, clean_times, create_stats, clean_stats = [], [], [], []
            for rep in range(runs):
                env = proxied_run_env(
                    scratch,
                    f"ceiling-{limiter}-{rep}",
                    moto_url,
                    proxy,
                    url,
                    IOTBUTTON_RATE_LIMITER=limiter,
                    IOTBUTTON_RATE_LIMITS=f"*={RATE:g}",
                )
                elapsed, result = run(
                    [IOTBUTTON, "things", "create", "--count", str(count), "--json"],
                    env,
                    check=False,
                )
                buttons = json.loads(result.stdout)["buttons"] if result.stdout.strip() else []
                created = sum(b["action"] == "created" for b in buttons)
                times.append(elapsed)
                create_stats.append(
                    {"created": created, "exit": result.returncode, **proxy.summary(ops)}
                )
                proxy.clear()
                elapsed, result = run([IOTBUTTON, "clean", "--yes", "--json"], env, check=False)
                clean_times.append(elapsed)
                clean_stats.append({"exit": result.returncode, **proxy.summary(clean_ops)})
            results[limiter] = {
                "create": summary(times),
                "clean": summary(clean_times),
                "create_runs": create_stats,
                "clean_runs": clean_stats,
            }
            worst = max(s["max_rejections_per_call"] for s in create_stats)
            worst_clean = max(s["max_rejections_per_call"] for s in clean_stats)
            throttled = sum(s["throttled"] for s in create_stats)
            ckac = max(
                s["operations"]["CreateCertificateFromCsr"]["max_per_second"] for s in create_stats
            )
            all_created = all(s["created"] == count for s in create_stats)
            if limiter == "on":
                report.add(
                    Row(
                        f"`things create --count {count}` at {RATE:g}/s per API + 100 ms",
                        summary(times),
                        ratio_text=f"{throttled} throttled; ≤ {worst} per call; "
                        f"CreateCertificateFromCsr ≤ {ckac}/s",
                        target="< 15 s, no call throttled twice",
                        met=statistics.median(times) < 15 and worst <= 1 and all_created,
                    )
                )
                clean_throttled = sum(s["throttled"] for s in clean_stats)
                report.add(
                    Row(
                        f"`clean` of {count} at {RATE:g}/s per API + 100 ms",
                        summary(clean_times),
                        ratio_text=f"{clean_throttled} throttled; ≤ {worst_clean} per call",
                    )
                )
            else:
                report.add(
                    Row(
                        "… the same with `IOTBUTTON_RATE_LIMITER=off` (adaptive retry only)",
                        summary(times),
                        ratio_text=f"{throttled} throttled; ≤ {worst} per call; "
                        f"{sum(s['created'] for s in create_stats)}/{count * runs} created",
                    )
                )
    finally:
        proxy.stop()
    report.data["rate_ceiling"] = {"count": count, "rate": RATE, "latency_s": LATENCY, **results}


def bench_quota_floor(report: Report, scratch: Path, counts: tuple[int, ...], reps: int) -> None:
    """`things create --count N` as against AWS: 100 ms per request, and AWS's default quota for
    every operation enforced by the proxy (burst 2). CreateCertificateFromCsr at 10/s sets the
    floor: N / 10 s plus one round trip. Wall time is from the process's start to its exit."""
    from iotbutton_cli.aws.ratelimit import DEFAULT_LIMITS

    print(f"quota floor: {', '.join(map(str, counts))} buttons, 100 ms per request, AWS quotas")
    results: dict[str, Any] = {}
    with moto_server(scratch, with_fixes=True) as moto_url:
        proxy = AwsProxy(moto_url, latency=LATENCY, limits=dict(DEFAULT_LIMITS))
        url = proxy.start()
        try:
            # Untimed: the moto server's first requests load its IoT models (AWS has no such
            # first call), which would otherwise land on the first run of the smallest count.
            env = proxied_run_env(scratch, "floor-warm-up", moto_url, proxy, url)
            run([IOTBUTTON, "things", "create", "--count", "2", "--json"], env)
            for count in counts:
                times, throttled, first_cert = [], 0, []
                for rep in range(reps):
                    env = proxied_run_env(
                        scratch,
                        f"floor-{count}-{rep}",
                        moto_url,
                        proxy,
                        url,
                        IOTBUTTON_RATE_LIMITER="on",
                    )
                    started = time.monotonic()
                    elapsed, result = run(
                        [IOTBUTTON, "things", "create", "--count", str(count), "--json"], env
                    )
                    made = sum(
                        b["action"] == "created" for b in json.loads(result.stdout)["buttons"]
                    )
                    assert made == count, result.stdout[-500:]
                    times.append(elapsed)
                    throttled += proxy.throttled()
                    certs = [r.at for r in proxy.of("CreateCertificateFromCsr")]
                    first_cert.append(min(certs) - started)
                floor = count / RATE + LATENCY
                first = seconds(statistics.median(first_cert))
                ratio = statistics.median(times) / floor
                report.add(
                    Row(
                        f"`things create --count {count}` at AWS's quotas + 100 ms",
                        summary(times),
                        versus=f"quota floor {seconds(floor)} (N / 10 s + a round trip)",
                        ratio=ratio,
                        ratio_text=f"{ratio:.2f} × the floor; {throttled} throttled",
                        target="≤ 1.25 × the floor, 0 throttled",
                        met=ratio <= 1.25 and throttled == 0,
                        notes=f"first certificate request at {first}",
                    )
                )
                results[str(count)] = {
                    "create": summary(times),
                    "floor_s": floor,
                    "ratio": ratio,
                    "throttled": throttled,
                    "first_certificate_request_s": summary(first_cert),
                }
        finally:
            proxy.stop()
    report.data["quota_floor"] = results


def bench_registry_scale(report: Report, scratch: Path, sizes: tuple[int, ...]) -> None:
    """`things create --count N` then `clean` at each size, on a moto server (with the
    sandbox's fixes) and no rate limiter: seconds per button should not grow with N."""
    print(f"registry scale: {', '.join(map(str, sizes))} buttons")
    per_button: dict[int, dict[str, float]] = {}
    with moto_server(scratch, with_fixes=True) as url:
        pid = MOTO_PIDS[url]
        for count in sizes:
            reset_moto(url)
            home = fresh_home(scratch, f"scale-{count}")
            env = {**base_env(home), "AWS_ENDPOINT_URL": url, "IOTBUTTON_RATE_LIMITER": "off"}
            figures: dict[str, float] = {}
            for step, command in (
                ("create", ["things", "create", "--count", str(count), "--key-type", "ec"]),
                ("clean", ["clean", "--yes"]),
            ):
                moto_before = process_cpu(pid)
                label = f"scale {step} {count}"
                elapsed, result = run([IOTBUTTON, *command, "--json"], env, label=label)
                document = json.loads(result.stdout)
                if step == "create":
                    made = sum(b["action"] == "created" for b in document["buttons"])
                    assert made == count, result.stdout[-500:]
                    figures["registry_bytes"] = (home / "registry.json").stat().st_size
                else:
                    assert document["complete"], result.stdout[-500:]
                figures[f"{step}_s"] = elapsed / count
                figures[f"{step}_cpu_s"] = CPU_SECONDS[label][-1] / count
                figures[f"{step}_moto_cpu_s"] = (process_cpu(pid) - moto_before) / count
            per_button[count] = figures
            print(f"    {count}: {figures}")
    smallest, largest = sizes[0], sizes[-1]
    for step in ("create", "clean"):
        for count in sizes:
            f = per_button[count]
            report.add(
                Row(
                    f"`{'things create --count' if step == 'create' else 'clean of'} {count}`, "
                    "per button (moto, no limiter)",
                    summary([f[f"{step}_s"]]),
                    versus=f"iotbutton CPU {seconds(f[f'{step}_cpu_s'])}, "
                    f"moto CPU {seconds(f[f'{step}_moto_cpu_s'])} per button",
                )
            )
        wall = per_button[largest][f"{step}_s"] / per_button[smallest][f"{step}_s"]
        cpu = per_button[largest][f"{step}_cpu_s"] / per_button[smallest][f"{step}_cpu_s"]
        report.add(
            Row(
                f"{step}: cost per button at {largest} against {smallest} buttons",
                value=f"wall {wall:.2f} ×, iotbutton CPU {cpu:.2f} ×",
                ratio=max(wall, cpu),
                target="≤ 1.25 × (flat)",
                met=max(wall, cpu) <= 1.25,
            )
        )
    report.data["registry_scale"] = {str(count): f for count, f in per_button.items()}


def notify_setup(env: dict[str, str]) -> None:
    run(
        [
            IOTBUTTON,
            "--sandbox",
            "notify",
            "init",
            "--account-sid",
            "AC" + "b" * 32,
            "--from",
            "+15005550006",
            "--person",
            "Bench",
            "--sms",
            "+15005550101",
            "--json",
        ],
        env,
    )
    # Each click is measured on its own: no debounce (a click within 5 s would be a repeat).
    config = Path(env["IOTBUTTON_HOME"]) / "config" / "notify.yaml"
    config.write_text(config.read_text().replace("\ndebounce: 5\n", "\ndebounce: 0\n"))


def bench_notify(report: Report, home: Path, reps: int) -> str:
    print("notifier: bundle and deploy")
    env = {**base_env(home), "TWILIO_AUTH_TOKEN": TWILIO_SECRET}
    _, created = run([IOTBUTTON, "--sandbox", "things", "create", "--json"], env)
    serial = json.loads(created.stdout)["buttons"][0]["serial"]
    notify_setup(env)
    bundle_times, size = [], 0
    for _ in range(reps):
        elapsed, result = run([IOTBUTTON, "notify", "bundle", "--json"], env)
        bundle_times.append(elapsed)
        size = json.loads(result.stdout)["size"]
    report.add(
        Row("`notify bundle`", summary(bundle_times), versus=f"zip of {size / 1024:.1f} KiB")
    )
    first, _ = run([IOTBUTTON, "--sandbox", "notify", "deploy", "--json"], env)
    report.add(Row("`notify deploy` (first, creates everything)", summary([first])))
    times, mutating_calls, calls = [], [], 0
    for _ in range(reps):
        elapsed, result = run([IOTBUTTON, "--sandbox", "-v", "notify", "deploy", "--json"], env)
        assert json.loads(result.stdout)["up_to_date"], result.stdout[-500:]
        seen = AWS_CALL.findall(result.stderr)
        calls = len(seen)
        mutating_calls += [f"{svc}:{op}" for svc, op, _ in seen if MUTATING.match(op)]
        times.append(elapsed)
    report.add(
        Row(
            "`notify deploy`, nothing changed",
            summary(times),
            versus=f"{calls} read-only AWS calls",
            ratio_text=f"{len(mutating_calls)} mutating calls",
            target="no mutating call, < 1.5 s",
            met=not mutating_calls and statistics.median(times) < 1.5,
        )
    )
    report.data["notify"] = {
        "bundle": summary(bundle_times),
        "bundle_bytes": size,
        "deploy_first_s": first,
        "deploy_unchanged": summary(times),
        "deploy_unchanged_calls": calls,
        "deploy_unchanged_mutating_calls": mutating_calls,
    }
    return serial


def bench_clicks(report: Report, home: Path, serial: str, clicks: int) -> None:
    """Publish on an open connection, then poll the outbox until the SMS shows up."""
    print(f"click to outbox: {clicks} clicks + 1 cold")
    os.environ["IOTBUTTON_HOME"] = str(home)
    from iotbutton_cli.context import AppContext, Settings
    from iotbutton_cli.device import simulator
    from iotbutton_cli.provisioning.endpoint import data_endpoint
    from iotbutton_cli.sandbox import client as sandbox_control

    ctx = AppContext(Settings(sandbox=True))
    serial, identity = simulator.button_identity(ctx, serial)
    endpoint = data_endpoint(ctx)
    outbox = Path(sandbox_control.require_running().outbox)
    topic = f"iotbutton/{serial}"
    payload = json.dumps(
        {"serialNumber": serial, "batteryVoltage": "1650mV", "clickType": "SINGLE"}
    )
    from awscrt import mqtt

    connect_started = time.perf_counter()
    connection = simulator._connect(endpoint, identity)  # what `sim click` does first
    connect = time.perf_counter() - connect_started
    latencies = []
    try:
        for _ in range(clicks + 1):
            before = _lines(outbox)
            started = time.perf_counter()
            future, _ = connection.publish(topic, payload, mqtt.QoS.AT_LEAST_ONCE)
            future.result(timeout=10)
            deadline = started + 30
            while _lines(outbox) <= before:
                if time.perf_counter() > deadline:
                    raise RuntimeError("no outbox entry 30 s after a click")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    finally:
        simulator._disconnect(connection)
    cold, warm = latencies[0], latencies[1:]
    p50, p95 = percentile(warm, 0.5), percentile(warm, 0.95)
    report.add(
        Row(
            "click → outbox, first click (cold Lambda worker)",
            summary([cold]),
            target="< 2 s",
            met=cold < 2,
        )
    )
    report.add(
        Row(
            f"click → outbox, warm (p50 of {len(warm)})",
            summary(warm),
            versus=f"p95 {seconds(p95)}",
            target="p50 < 300 ms",
            met=p50 < 0.3,
        )
    )
    report.data["click_to_outbox"] = {
        "cold_s": cold,
        "warm": summary(warm),
        "p50_s": p50,
        "p95_s": p95,
        "mqtt_connect_s": connect,
    }


def _lines(path: Path) -> int:
    """The Twilio requests in the outbox (not the stand-in's status callbacks, not SNS)."""
    try:
        with open(path, "rb") as handle:
            return sum(
                1
                for line in handle
                if line.strip()
                and b'"kind": "callback"' not in line
                and b'"kind": "sns"' not in line
            )
    except FileNotFoundError:
        return 0


def bench_sim_throughput(report: Report, home: Path, serial: str, reps: int, clicks: int) -> None:
    print(f"`sim click --count {clicks}`")
    env = base_env(home)
    from iotbutton_cli.sandbox import client as sandbox_control

    os.environ["IOTBUTTON_HOME"] = str(home)
    outbox = Path(sandbox_control.require_running().outbox)
    published, delivered, missing = [], [], 0
    for _ in range(reps):
        before = _lines(outbox)
        started = time.perf_counter()
        elapsed, _ = run(
            [IOTBUTTON, "--sandbox", "sim", "click", serial, "--count", str(clicks), "--json"], env
        )
        published.append(clicks / elapsed)
        deadline = time.perf_counter() + 120
        while _lines(outbox) < before + clicks and time.perf_counter() < deadline:
            time.sleep(0.01)
        arrived = _lines(outbox) - before
        missing += max(0, clicks - arrived)
        if arrived >= clicks:
            delivered.append(clicks / (time.perf_counter() - started))
    report.add(
        Row(
            f"`sim click --count {clicks}` (whole command)",
            summary(published),
            unit="clicks/s",
            versus=(
                f"all {clicks} SMS in the outbox: {statistics.median(delivered):.1f} clicks/s"
                if delivered
                else "never all in the outbox"
            )
            + (f"; {missing} of {clicks * reps} clicks never arrived" if missing else ""),
            met=False if missing else None,
            target="every click delivered" if missing else "",
        )
    )
    report.data["sim_click_throughput"] = {
        "clicks": clicks,
        "published_per_s": summary(published),
        "delivered_per_s": summary(delivered) if delivered else None,
        "missing": missing,
    }


# --- main ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import boto3
    import moto

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "moto": moto.__version__,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def bench_sandbox_start(report: Report, scratch: Path, reps: int) -> None:
    """`sandbox start` until it answers (it returns once its ports do), and a warm `demo`."""
    print("sandbox start and demo")
    home = fresh_home(scratch, "sandbox-start")
    env = base_env(home)
    starts, server_cpu = [], []
    for _ in range(reps):
        elapsed, _ = run([IOTBUTTON, "sandbox", "start"], env)
        starts.append(elapsed)
        _, status = run([IOTBUTTON, "sandbox", "status", "--json"], env)
        with contextlib.suppress(OSError, KeyError, ValueError):
            fields = Path(f"/proc/{json.loads(status.stdout)['pid']}/stat").read_text().split()
            server_cpu.append((int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK"))
        run([IOTBUTTON, "sandbox", "stop"], env)
    median = statistics.median(starts)
    cpu = (
        f"its process's CPU by then {seconds(statistics.median(server_cpu))}" if server_cpu else ""
    )
    report.add(
        Row(
            "`iotbutton sandbox start` to its first answer",
            summary(starts),
            target="< 1.5 s",
            met=median < 1.5,
            notes=cpu,
        )
    )
    report.data["sandbox_start"] = summary(starts)
    demo_home = fresh_home(scratch, "demo")
    demo_env = base_env(demo_home)
    run([IOTBUTTON, "demo"], demo_env)  # cold: page cache, bytecode, the notifier bundle
    demos = [run([IOTBUTTON, "demo"], demo_env)[0] for _ in range(max(1, reps // 2))]
    median = statistics.median(demos)
    report.add(
        Row("`iotbutton demo` end to end, warm", summary(demos), target="< 6 s", met=median < 6)
    )
    report.data["demo_warm"] = summary(demos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--only",
        action="append",
        choices=[
            "startup",
            "sandbox-start",
            "sandbox",
            "latency",
            "ceiling",
            "floor",
            "notify",
            "scale",
        ],
        help="run only these parts (repeatable)",
    )
    args = parser.parse_args(argv)
    parts = set(
        args.only
        or ["startup", "sandbox-start", "sandbox", "latency", "ceiling", "floor", "notify", "scale"]
    )
    quick = args.quick
    report = Report(quick)
    started = time.monotonic()
    facts = machine()
    with tempfile.TemporaryDirectory(prefix="iotbutton-bench-") as folder:
        scratch = Path(folder)
        with moto_server(scratch) as moto_url:
            if "startup" in parts:
                bench_startup(report, scratch, moto_url, reps=5 if quick else 11)
            if "latency" in parts:
                bench_latency(report, scratch, moto_url, reps=1 if quick else 2, count=50)
            if "ceiling" in parts:
                bench_rate_ceiling(
                    report, scratch, moto_url, reps=1 if quick else 2, count=100, contrast=not quick
                )
        if "floor" in parts:
            bench_quota_floor(
                report, scratch, (30, 100) if quick else (30, 100, 500), reps=1 if quick else 2
            )
        if "scale" in parts:
            bench_registry_scale(report, scratch, (100, 1000) if quick else (100, 1000, 5000))
        if "sandbox-start" in parts:
            bench_sandbox_start(report, scratch, reps=3 if quick else 7)
        if parts & {"sandbox", "notify"}:
            home = fresh_home(scratch, "sandbox")
            with sandbox(home) as info:
                if "sandbox" in parts:
                    bench_sandbox_bulk(report, home, info, reps=1 if quick else 3, count=50)
                if "notify" in parts:
                    serial = bench_notify(report, home, reps=3 if quick else 5)
                    bench_clicks(report, home, serial, clicks=20 if quick else 50)
                    bench_sim_throughput(report, home, serial, reps=1 if quick else 3, clicks=100)
    report.data["duration_s"] = round(time.monotonic() - started, 1)
    facts["load_average_at_end"] = round(os.getloadavg()[0], 2)
    table = markdown(report, facts)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": facts,
        "quick": quick,
        "results": report.data,
        "rows": [row.__dict__ for row in report.rows],
        "markdown": table,
    }
    args.output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print()
    print(table)
    print(f"\n(written to {args.output}; took {report.data['duration_s']:.0f} s)")
    missed = [row.name for row in report.rows if row.met is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
