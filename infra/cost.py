#!/usr/bin/env python3
"""What a delivered event costs: `make cost`.

Prices the per-event figures of `make bench-pipeline` (.local/bench/pipeline-b*.json)
with the price table infra/prices.toml, and the fixed monthly floor of an idle stage
from the resources infra/template.yaml creates (conditions evaluated with the
template's defaults and the given stage).

    cost.py [--bench FILE]... [--prices infra/prices.toml] [--template infra/template.yaml]
            [--stage dev] [--param NAME=VALUE]...

What is measured and what is assumed:
- calls, write/read units, SQS 64 KB chunks, log bytes, invocations: measured by the
  bench (its counting proxy and the functions' own output);
- Lambda duration: the invocations' measured durations under the bench's Runtime API
  emulator, rounded up to the millisecond as Lambda bills them, at the template's
  memory size. Locally the destination answers at once and the AWS endpoint is local;
  in AWS a destination's latency adds to the dispatcher's billed time, shown per
  100 ms of it;
- DynamoDB writes: the table's write units as the proxy saw them, plus one unit per
  item that entered a secondary index (counted in the indexes after the run);
- API Gateway: one request per event (bodies are far below 512 KB);
- X-Ray: only when the template's LambdaTracing is Active.
"""

import argparse
import re
import math
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_stack import load_template  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def evaluate(value, params, conditions, cache):
    """A condition's value (Fn::Equals/Not/And/Or, Condition, Ref to a parameter)."""
    if isinstance(value, dict):
        ((key, arg),) = value.items()
        if key == "Ref":
            return params.get(arg, arg)
        if key == "Condition":
            return condition(arg, params, conditions, cache)
        if key == "Fn::Equals":
            a, b = (evaluate(x, params, conditions, cache) for x in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not evaluate(arg[0], params, conditions, cache)
        if key == "Fn::And":
            return all(evaluate(x, params, conditions, cache) for x in arg)
        if key == "Fn::Or":
            return any(evaluate(x, params, conditions, cache) for x in arg)
        raise ValueError(f"cannot evaluate {key} in a condition")
    return value


def condition(name, params, conditions, cache):
    if name not in cache:
        cache[name] = bool(evaluate(conditions[name], params, conditions, cache))
    return cache[name]


def resolve_bool(value, params, conditions, cache):
    """A property that may be !If [COND, a, b] or a plain value."""
    if isinstance(value, dict) and "Fn::If" in value:
        cond, a, b = value["Fn::If"]
        return resolve_bool(a if condition(cond, params, conditions, cache) else b, params, conditions, cache)
    if isinstance(value, dict):
        return evaluate(value, params, conditions, cache)
    return value


def stage_resources(template, overrides):
    """The resources a stage gets, with its function memory sizes and polled queues."""
    params = {k: str(p.get("Default", "")) for k, p in template.get("Parameters", {}).items()}
    params.update(overrides)
    conditions, cache = template.get("Conditions", {}), {}
    kept = {}
    for name, r in template["Resources"].items():
        if "Condition" in r and not condition(r["Condition"], params, conditions, cache):
            continue
        kept[name] = r
    default_memory = template.get("Globals", {}).get("Function", {}).get("MemorySize", 128)
    tracing = evaluate(template.get("Globals", {}).get("Function", {}).get("Tracing", "PassThrough"), params, conditions, cache)
    memory, pollers = {}, []
    for name, r in kept.items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        props = r.get("Properties", {})
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", name)
        memory[binary] = props.get("MemorySize", default_memory)
        for ev_name, ev in props.get("Events", {}).items():
            if ev.get("Type") == "SQS":
                enabled = resolve_bool(ev.get("Properties", {}).get("Enabled", True), params, conditions, cache)
                if enabled in (True, "true", "True"):
                    pollers.append(f"{binary}.{ev_name}")
    for name, r in kept.items():
        if r["Type"] == "AWS::Lambda::EventSourceMapping":
            pollers.append(name)
    return kept, memory, pollers, tracing


RATE_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def schedules(resources, memory):
    """(function binary, its memory, minutes between runs) of each ScheduleV2 event."""
    out = []
    for name, r in resources.items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        binary = r.get("Metadata", {}).get("BuildProperties", {}).get("Binary", name)
        for ev in r.get("Properties", {}).get("Events", {}).values():
            if ev.get("Type") == "ScheduleV2":
                m = re.fullmatch(r"rate\((\d+) (\w+)\)", ev["Properties"]["ScheduleExpression"])
                if not m or m.group(2) not in RATE_MINUTES:
                    raise SystemExit(f"{name}: only rate(N minute|hour|day) schedules are priced")
                out.append((binary, memory.get(binary, 128), int(m.group(1)) * RATE_MINUTES[m.group(2)]))
    return out


def count(resources, kind):
    return sum(1 for r in resources.values() if r["Type"] == kind)


def per_million(bench, prices, memory, tracing):
    """Line items in $ per million delivered events."""
    fns = bench["functions"]
    calls = bench["calls"]

    def billed(service, ops=None):
        return sum(c["billed_per_event"] for c in calls if c["service"] == service and (ops is None or c["operation"] in ops))

    def made(service):
        return sum(c["calls_per_event"] for c in calls if c["service"] == service)

    writes = billed("dynamodb", {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
    # A write that puts an item into a secondary index costs the same again there.
    writes += sum(bench.get("index_write_units_per_event", {}).values())
    reads = billed("dynamodb", {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
    gb_s = sum(f["billed_ms_per_event"] / 1000 * memory.get(name, 128) / 1024 for name, f in fns.items())
    invocations = sum(f["invocations_per_event"] for f in fns.values())
    log_bytes = sum(f["log_bytes_per_event"] for f in fns.values())
    m = 1_000_000
    items = {
        "API Gateway HTTP API": fns["intake"]["invocations_per_event"] * prices["api_gateway_http"]["usd_per_million_requests"],
        "Lambda requests": invocations * prices["lambda"]["usd_per_million_requests"],
        "Lambda duration (arm64)": gb_s * m * prices["lambda"]["usd_per_gb_second_arm64"],
        "SQS requests": billed("sqs") * prices["sqs"]["usd_per_million_requests"],
        "DynamoDB writes": writes * prices["dynamodb"]["usd_per_million_write_units"],
        "DynamoDB reads": reads * prices["dynamodb"]["usd_per_million_read_units"],
        # The event archive (ArchiveEvents): one PutObject per mapper batch and minute.
        "S3 archive writes": made("s3") * prices["s3"]["usd_per_million_put_requests"],
        "Secrets Manager calls": made("secretsmanager") * m / 10_000 * prices["secrets_manager"]["usd_per_10k_calls"],
        "CloudWatch Logs ingestion": log_bytes * m / 1e9 * prices["cloudwatch"]["usd_per_gb_logs_ingested"],
        "X-Ray traces": (prices["xray"]["usd_per_million_traces"] if tracing == "Active" else 0.0),
    }
    # Each 100 ms a destination takes to answer: the dispatcher's batch waits for its
    # slowest call (calls within a batch run concurrently), once per invocation.
    per_100ms = fns["dispatcher"]["invocations_per_event"] * 0.1 * memory.get("dispatcher", 128) / 1024 * m * prices["lambda"]["usd_per_gb_second_arm64"]
    return items, per_100ms, {"write_units": writes, "read_units": reads, "invocations": invocations}


def idle_floor(resources, pollers, prices, memory):
    cw, sm, idle = prices["cloudwatch"], prices["secrets_manager"], prices["idle"]
    receives = idle["pollers_per_queue"] * idle["receives_per_poller_minute"] * idle["minutes_per_month"]
    secrets = count(resources, "AWS::SecretsManager::Secret")
    alarms = count(resources, "AWS::CloudWatch::Alarm")
    composite = count(resources, "AWS::CloudWatch::CompositeAlarm")
    dashboards = count(resources, "AWS::CloudWatch::Dashboard")
    return {
        f"Secrets Manager ({secrets} secrets)": secrets * sm["usd_per_secret_month"],
        f"CloudWatch alarms ({alarms})": alarms * cw["usd_per_alarm_month"],
        f"CloudWatch composite alarms ({composite})": composite * cw["usd_per_composite_alarm_month"],
        f"CloudWatch dashboards ({dashboards})": dashboards * cw["usd_per_dashboard_month"],
        f"Idle SQS polling ({len(pollers)} queues: {', '.join(pollers)})": len(pollers) * receives / 1e6 * prices["sqs"]["usd_per_million_requests"],
        **{
            f"Scheduled {binary} runs (every {every} min, nothing to do)": scheduled_run(mb, every, prices)
            for binary, mb, every in schedules(resources, memory)
        },
    }


def scheduled_run(memory_mb, every_minutes, prices):
    """A month of idle scheduled runs: Scheduler, Lambda, and (priced as the poller's)
    a cursor read and write and a secret read when the cache lapses."""
    idle, lam, ddb = prices["idle"], prices["lambda"], prices["dynamodb"]
    runs = idle["minutes_per_month"] / every_minutes
    gb_s = runs * idle["poll_run_ms"] / 1000 * memory_mb / 1024
    return (
        runs / 1e6 * prices["scheduler"]["usd_per_million_invocations"]
        + runs / 1e6 * lam["usd_per_million_requests"]
        + gb_s * lam["usd_per_gb_second_arm64"]
        + runs / 1e6 * (ddb["usd_per_million_write_units"] + ddb["usd_per_million_read_units"])
        + runs * idle["poll_secret_reads_per_minute"] / 10_000 * prices["secrets_manager"]["usd_per_10k_calls"]
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", action="append", help="a bench-pipeline JSON (default: .local/bench/pipeline-b*.json)")
    ap.add_argument("--prices", default=str(ROOT / "infra/prices.toml"))
    ap.add_argument("--template", default=str(ROOT / "infra/template.yaml"))
    ap.add_argument("--stage", default="dev")
    ap.add_argument("--param", action="append", default=[], help="a template parameter, NAME=VALUE")
    args = ap.parse_args(argv)

    prices = tomllib.loads(Path(args.prices).read_text(encoding="utf-8"))
    overrides = dict(p.split("=", 1) for p in args.param)
    overrides["Stage"] = args.stage
    resources, memory, pollers, tracing = stage_resources(load_template(args.template), overrides)

    files = [Path(f) for f in args.bench] if args.bench else sorted((ROOT / ".local/bench").glob("pipeline-b*.json"))
    benches = [__import__("json").loads(f.read_text(encoding="utf-8")) for f in files]
    benches.sort(key=lambda b: -b["batch_size"])
    if not benches:
        print("no bench figures: run `make bench-pipeline` first (it writes .local/bench/pipeline-b*.json)", file=sys.stderr)
        return 2

    columns = [per_million(b, prices, memory, tracing) for b in benches]
    heads = [f"batch {b['batch_size']}" for b in benches]
    width = 30
    print(f"$ per million delivered events (stage {args.stage}, prices of {Path(args.prices).name}, Tracing {tracing})\n")
    print(f"{'line item':<{width}}" + "".join(f"{h:>12}" for h in heads))
    for item in columns[0][0]:
        print(f"{item:<{width}}" + "".join(f"{c[0][item]:>12.3f}" for c in columns))
    totals = [sum(c[0].values()) for c in columns]
    print(f"{'total':<{width}}" + "".join(f"{t:>12.3f}" for t in totals))
    front = [t - c[0]["API Gateway HTTP API"] for t, c in zip(totals, columns)]
    print(f"{'total with a Function URL':<{width}}" + "".join(f"{t:>12.3f}" for t in front))
    print(f"{'+ per 100 ms of destination':<{width}}" + "".join(f"{c[1]:>12.3f}" for c in columns))
    print()
    for b, c in zip(benches, columns):
        print(
            f"batch {b['batch_size']}: {b['events']} events measured; {c[2]['invocations']:.2f} invocations, "
            f"{c[2]['write_units']:.2f} write units, {c[2]['read_units']:.2f} read units per event"
        )

    floor = idle_floor(resources, pollers, prices, memory)
    print(f"\nIdle stage, $ per month (nothing flowing)\n")
    for item, usd in floor.items():
        print(f"  {item:<70}{usd:>8.2f}")
    print(f"  {'total':<70}{sum(floor.values()):>8.2f}")
    own = sum(v for k, v in floor.items() if not k.startswith("Secrets Manager"))
    print(f"  {'of which switchyard itself (without the flow file credentials)':<70}{own:>8.2f}")
    print(
        "\nWhile events flow, each custom metric series (flow, destination, reason) adds "
        f"${prices['cloudwatch']['usd_per_metric_month']:.2f} per month it is published in."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
