#!/usr/bin/env python3
"""Create switchyard's data resources in a local AWS-compatible endpoint (moto).

    local_stack.py wait   --endpoint URL [--timeout 20]
    local_stack.py deploy --endpoint URL --stage STAGE [--secrets FILE] [--out FILE]
    local_stack.py env    --stack FILE

`deploy` translates infra/template.yaml offline with aws-sam-translator, keeps
the queues and the table (moto's CloudFormation cannot run the functions, and
the local runner plays the event source mappings), creates them as the stack
`switchyard-{stage}` through the endpoint's CloudFormation API, then creates the
template's secrets through Secrets Manager (moto's CloudFormation reports
success for AWS::SecretsManager::Secret without creating it) with the values of
the local secrets file. It prints the names and URLs the binaries need as JSON.

`env` turns that JSON into KEY=VALUE lines: the environment a function has in
AWS, pointed at the endpoint (`make lambda-smoke` starts intake with it).

It runs once per end-to-end test, so heavy imports (boto3, samtranslator,
yaml) happen only inside the subcommand that needs them.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

INFRA = Path(__file__).resolve().parent
TEMPLATE = INFRA / "template.yaml"
REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep a developer's real profile out of it.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

# What moto's CloudFormation can create and the local runner needs (it keeps a
# bucket's encryption but not its lifecycle: nothing expires locally).
KEEP_TYPES = {"AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::S3::Bucket"}
SECRET_TYPE = "AWS::SecretsManager::Secret"
# A stack not complete after this is a failed deploy, not a slow one.
STACK_TIMEOUT_S = 30


class DeployError(Exception):
    pass


# ------------------------------------------------------------------ template


def load_template(path):
    """Parse a CloudFormation YAML template, short-form intrinsics included."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def intrinsic(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Fn::" + suffix: value}

    Loader.add_multi_constructor("!", intrinsic)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


def translate(sam_template, stage):
    """Expand the SAM transform offline, as CloudFormation's transform would."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    for resource in sam_template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # The translator only accepts packaged code; nothing is uploaded locally.
            resource["Properties"]["CodeUri"] = "s3://switchyard-local/unused.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    return translator.translate(sam_template, parameter_values={"Stage": stage})


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(value):
    """Logical ids (and parameters) that a template fragment refers to."""
    found = set()
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found.update(v.split(".", 1)[0] for v in _SUB_VAR.findall(text))
            if key != "Fn::Sub" or not isinstance(arg, str):
                found |= references(arg)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def data_only(template):
    """Keep the resources moto's CloudFormation should create, and what still resolves."""
    resources = {k: r for k, r in template["Resources"].items() if r["Type"] in KEEP_TYPES}
    # Drop, to a fixed point, whatever refers to a resource that is gone.
    gone = set(template["Resources"]) - set(resources)
    while True:
        dangling = {k for k, r in resources.items() if references(r) & gone or _depends_on(r) & gone}
        if not dangling:
            break
        gone |= dangling
        for k in dangling:
            del resources[k]
    outputs = {k: o for k, o in template.get("Outputs", {}).items() if not references(o) & gone}
    # Parameters only the functions use (and that may have no default) would have to be given.
    used = references([resources, outputs, template.get("Conditions", {})])
    parameters = {k: p for k, p in template.get("Parameters", {}).items() if k in used}
    kept = {k: v for k, v in template.items() if k not in ("Parameters", "Resources", "Outputs")}
    return {**kept, "Parameters": parameters, "Resources": resources, "Outputs": outputs}


def _depends_on(resource):
    deps = resource.get("DependsOn", [])
    return {deps} if isinstance(deps, str) else set(deps)


def stage_name(value, stage, what):
    """A resource name from the template: a string, or !Sub over ${Stage} only."""
    if isinstance(value, dict):
        value = value.get("Fn::Sub")
    if not isinstance(value, str) or "${" in value.replace("${Stage}", ""):
        raise DeployError(f"{what}: name must be a string or !Sub over ${{Stage}} only")
    return value.replace("${Stage}", stage)


def secret_names(template, stage):
    return [
        stage_name(r["Properties"]["Name"], stage, logical_id)
        for logical_id, r in template["Resources"].items()
        if r["Type"] == SECRET_TYPE
    ]


def table_ttls(template, stage):
    """{table name: TTL attribute} for the tables whose template enables TTL."""
    ttls = {}
    for logical_id, r in template["Resources"].items():
        ttl = r["Properties"].get("TimeToLiveSpecification", {}) if r["Type"] == "AWS::DynamoDB::Table" else {}
        if ttl.get("Enabled"):
            ttls[stage_name(r["Properties"]["TableName"], stage, logical_id)] = ttl["AttributeName"]
    return ttls


# --------------------------------------------------------------------- AWS


def clients(endpoint):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=REGION, **CREDENTIALS)
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
    return lambda service: session.client(service, endpoint_url=endpoint, config=config)


def deploy_stack(cfn, name, template, stage):
    body = json.dumps(template)
    params = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    try:
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except cfn.exceptions.ClientError as e:
        if "does not exist" not in str(e):
            raise
        status = None
    if status and (status.endswith("_FAILED") or status == "ROLLBACK_COMPLETE"):
        cfn.delete_stack(StackName=name)  # cannot be updated; nothing in it worth keeping
        status = None
    if status:
        # Update in place: queues and table (and their contents) survive a re-run.
        try:
            cfn.update_stack(StackName=name, TemplateBody=body, Parameters=params)
        except cfn.exceptions.ClientError as e:
            if "No updates are to be performed" not in str(e):
                raise
    else:
        cfn.create_stack(StackName=name, TemplateBody=body, Parameters=params)

    deadline = time.monotonic() + STACK_TIMEOUT_S
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            return stack
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            reason = stack.get("StackStatusReason", "")
            raise DeployError(f"stack {name} ended in {status} {reason}".strip())
        time.sleep(0.05)


def put_secret(sm, name, value):
    try:
        sm.create_secret(Name=name, SecretString=value, Description="switchyard local stack")
    except sm.exceptions.ResourceExistsException:
        # A new version takes AWSCURRENT; the old one becomes AWSPREVIOUS, as on AWS.
        sm.put_secret_value(SecretId=name, SecretString=value)


def deploy(args):
    stage = args.stage
    secrets_file = json.loads(Path(args.secrets).read_text(encoding="utf-8"))
    template = translate(load_template(TEMPLATE), stage)
    prefix = f"switchyard/{stage}/"
    secrets = {name: secrets_file.get(name.removeprefix(prefix)) for name in secret_names(template, stage)}
    missing = [name.removeprefix(prefix) for name, value in secrets.items() if value is None]
    if missing:
        raise DeployError(f"{args.secrets} has no value for {', '.join(missing)}")

    client = clients(args.endpoint)
    deploy_stack(client("cloudformation"), f"switchyard-{stage}", data_only(template), stage)

    sm = client("secretsmanager")
    for name, value in secrets.items():
        put_secret(sm, name, value)

    # moto's CloudFormation accepts TimeToLiveSpecification and ignores it.
    dynamodb = client("dynamodb")
    for table, attribute in table_ttls(template, stage).items():
        ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if ttl["TimeToLiveStatus"] != "ENABLED":
            dynamodb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
            )

    sqs = client("sqs")
    table = f"switchyard-{stage}-ledger"
    dynamodb.describe_table(TableName=table)  # fails loudly if CloudFormation skipped it

    def url(queue):
        return sqs.get_queue_url(QueueName=f"switchyard-{stage}-{queue}")["QueueUrl"]

    # The archive bucket (ArchiveEvents), by its name's prefix: the rest is the account.
    buckets = client("s3").list_buckets()["Buckets"]
    archive = next((b["Name"] for b in buckets if b["Name"].startswith(f"switchyard-{stage}-archive-")), None)

    return {
        "stage": stage,
        "endpoint": args.endpoint,
        "ledger_table": table,
        "ingest_queue_url": url("ingest"),
        "ingest_dlq_url": url("ingest-dlq"),
        "dispatch_queue_url": url("dispatch"),
        "dispatch_dlq_url": url("dispatch-dlq"),
        "dispatch_fifo_queue_url": url("dispatch.fifo"),
        "dispatch_fifo_dlq_url": url("dispatch-dlq.fifo"),
        "dispatcher_timeout_secs": int(template["Parameters"]["DispatcherTimeoutSecs"]["Default"]),
        "archive_bucket": archive,
        "secrets": list(secrets),
    }


# -------------------------------------------------------------- subcommands


def cmd_deploy(args):
    started = time.monotonic()
    stack = deploy(args)
    text = json.dumps(stack, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"deployed switchyard-{args.stage} in {time.monotonic() - started:.2f}s", file=sys.stderr)


def cmd_wait(args):
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + args.timeout
    url = args.endpoint.rstrip("/") + "/moto-api/"
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered: that is all we wait for
        except OSError as e:
            if time.monotonic() > deadline:
                raise DeployError(f"{args.endpoint} did not answer within {args.timeout}s: {e}") from e
            time.sleep(0.05)


# The environment a function gets in AWS (template Globals + its own variables),
# pointed at the local endpoint. Every function gets every name: harmless locally.
ENV_KEYS = {
    "SWITCHYARD_STAGE": "stage",
    "SWITCHYARD_LEDGER_TABLE": "ledger_table",
    "SWITCHYARD_INGEST_QUEUE_URL": "ingest_queue_url",
    "SWITCHYARD_INGEST_DLQ_URL": "ingest_dlq_url",
    "SWITCHYARD_DISPATCH_QUEUE_URL": "dispatch_queue_url",
    "SWITCHYARD_DISPATCH_DLQ_URL": "dispatch_dlq_url",
    "SWITCHYARD_DISPATCH_FIFO_QUEUE_URL": "dispatch_fifo_queue_url",
    "SWITCHYARD_DISPATCH_FIFO_DLQ_URL": "dispatch_fifo_dlq_url",
    "SWITCHYARD_DISPATCHER_TIMEOUT_SECS": "dispatcher_timeout_secs",
    "SWITCHYARD_ARCHIVE_BUCKET": "archive_bucket",
    "AWS_ENDPOINT_URL": "endpoint",
}


def cmd_env(args):
    stack = json.loads(Path(args.stack).read_text(encoding="utf-8"))
    for key, field in ENV_KEYS.items():
        print(f"{key}={stack.get(field) or ''}")
    print(f"AWS_REGION={REGION}")
    print(f"AWS_ACCESS_KEY_ID={CREDENTIALS['aws_access_key_id']}")
    print(f"AWS_SECRET_ACCESS_KEY={CREDENTIALS['aws_secret_access_key']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("deploy", help="create queues, table and secrets; print their names as JSON")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--secrets", default=str(INFRA / "local-secrets.json"))
    p.add_argument("--out", help="also write the JSON to this file")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("wait", help="wait until the endpoint answers HTTP")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--timeout", type=float, default=20)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("env", help="print a deploy's JSON as KEY=VALUE lines for a function")
    p.add_argument("--stack", required=True)
    p.set_defaults(func=cmd_env)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except DeployError as e:
        print(f"local_stack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
