#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the
repository's real fixtures (events/, config/) and the providers' published test
vectors (the same ones the signature unit tests use).

Input layouts are documented in common/src/fuzz_entry/ and
functions/intake/src/fuzz_entry.rs. Seeds are named by content (sha1, as libFuzzer
names corpus files), so running this again only adds what is new. Run it from the
repository root: `python3 fuzz/seed_corpus.py`; then minimize with `fuzz/run.sh cmin TARGET`
if a target's seeds grew.
"""

import base64
import hashlib
import hmac
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
EVENTS = ROOT / "events"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def mac(secret, *parts):
    return hmac.new(secret, b"".join(parts), hashlib.sha256).digest()


def payloads():
    """(source, name, raw bytes) of every provider payload fixture."""
    for source in ["stripe", "github", "shopify", "standard", "acme"]:
        for path in sorted((EVENTS / source).glob("*.json")):
            yield source, path.stem, path.read_bytes()


def lines(*headers, body=b""):
    return b"".join(h + b"\n" for h in headers) + body


def signature_seeds():
    # Stripe: the unit tests' independently computed vector, then fixtures signed alike.
    stripe, t = b"whsec_stripe_example_secret", b"1700000000"
    body = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event"}'
    write("signature_stripe", lines(b"t=1700000000,v1=0ce52b5cc981c5efbed579d14f6a579d03f0b9167debc23ddf573f8519400ad9", body=body))
    write("signature_stripe", lines(b"t=1700000000,v0=00,v1=zz,v1=" + mac(stripe, t, b".", body).hex().encode(), body=body))
    write("signature_stripe", lines(b"t=1700000000,t=1", body=body))
    for source, _, raw in payloads():
        if source == "stripe":
            write("signature_stripe", lines(b"t=" + t + b",v1=" + mac(stripe, t, b".", raw).hex().encode(), body=raw))

    # GitHub's documented example, and the push fixture.
    github = b"It's a Secret to Everybody"
    delivery = b"72d3162e-cc78-11e3-81ab-4c9367dc0958"
    write("signature_github", lines(b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", delivery, body=b"Hello, World!"))
    write("signature_github", lines(b"sha1=00\x00sha256=00", b"", body=b"{}"))
    for source, _, raw in payloads():
        if source == "github":
            write("signature_github", lines(b"sha256=" + mac(github, raw).hex().encode(), delivery, body=raw))

    # Shopify (independently computed), and the orders/create fixture.
    shopify = b"shpss_example_secret"
    body = b'{"id":820982911946154508,"email":"jon@example.com"}'
    webhook_id = b"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    write("signature_shopify", lines(b"35DGSCsYGhssCXikM1rFvRtvLrHjZ3LG9BTZ5lYDs7g=", webhook_id, body=body))
    write("signature_shopify", lines(b"35DGSCsYGhssCXikM1rFvRtvLrHjZ3LG9BTZ5lYDs7g", b"", body=body))
    for source, _, raw in payloads():
        if source == "shopify":
            write("signature_shopify", lines(base64.b64encode(mac(shopify, raw)), webhook_id, body=raw))

    # Standard Webhooks' published vector, and the invoice.paid fixture.
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    msg_id, t = b"msg_p5jXN8AQM9LWM0D4loKWxJek", b"1614265330"
    body = b'{"test": 2432232314}'
    write("signature_standard", lines(msg_id, t, b"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", body=body))
    write("signature_standard", lines(msg_id, t, b"v1a,AAAA v2,BBBB v1,", body=body))
    for source, _, raw in payloads():
        if source == "standard":
            signature = base64.b64encode(mac(key, msg_id, b".", t, b".", raw))
            write("signature_standard", lines(msg_id, t, b"v1," + signature, body=raw))

    # The generic scheme: the unit tests' timed vector, and the acme fixture both ways.
    acme, t = b"acme-secret", b"1700000000"
    body = b'{"event":"ping"}'
    write("signature_hmac", lines(b"sha256=f3299f0d735063a1152ae3a0d3e8fcf98a4032308189c917e5b19b5533843acd", t, b"evt_42", body=body))
    write("signature_hmac", lines(b"unJ7eq1UxVJDGNgqvIqLjoB0YJuflAbzJhKv6WyYIiw=", b"", b"", body=body))
    for source, _, raw in payloads():
        if source == "acme":
            write("signature_hmac", lines(b"sha256=" + mac(acme, t, b".", raw).hex().encode(), t, b"evt_acme", body=raw))
            write("signature_hmac", lines(base64.b64encode(mac(acme, raw)), b"", b"", body=raw))


def records(name):
    return [r["body"] for r in json.loads((EVENTS / "sqs" / name).read_text())["Records"]]


def message_seeds():
    for body in records("mapper-envelope.json"):
        write("envelope", body)
    for source, name, raw in payloads():
        envelope = {
            "specversion": "1.0",
            "id": f"{source}-{name}",
            "source": f"/hooks/{source}",
            "type": name,
            "time": "2026-11-23T10:00:00.000Z",
            "datacontenttype": "application/json",
            "data": json.loads(raw),
            "correlationid": "7d1f6a2e-2b7c-4d43-9a47-0f8f3b0d6c11",
        }
        if source == "github":
            envelope["providerheaders"] = json.dumps({"x-github-event": "push"})
        write("envelope", json.dumps(envelope))
    write("envelope", '{"specversion":"0.3","id":"","source":"/hooks/"}')

    for body in records("dispatcher-delivery-dark.json"):
        write("delivery", body)
        live = json.loads(body)
        live.update(mode="live", ordering_key="cus_1", entity_version=3)
        write("delivery", json.dumps(live))
    write("delivery", '{"delivery_id":"","flow":"","body":1e400}')


def flow_file_seeds():
    flows = (ROOT / "config" / "flows.toml").read_text()
    mapping = next((ROOT / "config" / "mappings").glob("*.jq")).read_text()
    contract = next((ROOT / "config" / "contracts").glob("*.json")).read_text()
    write("flow_file", flows + "\0" + mapping + "\0" + contract)
    write("flow_file", flows)
    write("flow_file", "")
    minimal = """
[sources.acme]
scheme = "hmac"
header = "X-Sig"
timestamp_header = "X-Sig-Time"
tolerance_secs = 60
keep_headers = ["X-Trace"]

[destinations.api]
base_url = "https://api.example.com/"
auth = { kind = "bearer", secret = "destination/api" }
timeout_ms = 1000
retry = { max_attempts = 3, base_delay_ms = 100, max_delay_ms = 1000 }

[[flows]]
name = "acme-to-api"
version = 2
source = "acme"
mapping = "m.jq"
destination = "api"
method = "put"
path = "/things"
mode = "dark"
filter = ".kind == \\"thing\\""
ordering_key = ".thing.id"
entity_version = ".thing.version"
sensitive = ["ssn"]
"""
    write("flow_file", minimal + "\0" + "{id: .thing.id, name: (.thing.name // error(\"no name\"))}")


def redact_seeds():
    write("redact", 'sk_live_51Habcdef\n{"level":"INFO","fields":{"message":"token sk_live_51Habcdef","email":"jon@example.com"}}\n')
    write("redact", 'hunter2hunter2\n{"level":"WARN","fields":{"message":"call +44 20 7946 0958 or (555) 123-4567, card 4242 4242 4242 4242"}}')
    write("redact", 'p"a\\ss\n{"fields":{"body":"{\\"password\\":\\"p\\\\\\"a\\\\\\\\ss\\",\\"nested\\":[{\\"Authorization\\":\\"Bearer x\\"}]}"},"span":{"name":"dispatch","flow":"crm"}}')
    write("redact", "whsec_c3VwZXItc2VjcmV0\nplain text line with jane.doe+tag@mail.example.org and 2026-11-23T10:00:00Z 550e8400-e29b-41d4-a716-446655440000")
    for _, _, raw in payloads():
        line = json.dumps({"level": "INFO", "fields": {"message": "payload", "payload": raw.decode()}})
        write("redact", "whsec_fixture_secret\n" + line)
        break


INTAKE = "intake_request"
BASE64, SIGN, GET, PATH_PARAMETER, NO_BODY = 1, 2, 4, 8, 16


def request(flags, path, headers, body):
    head = "".join(f"{name}: {value}\n" for name, value in headers.items())
    return bytes([flags]) + (path + "\n" + head + "\n").encode() + body


def intake_seeds():
    # The API Gateway fixtures as they are (unsigned or badly signed: 404, 401).
    for path in sorted((EVENTS / "intake").glob("*.json")):
        event = json.loads(path.read_text())
        flags = (BASE64 if event.get("isBase64Encoded") else 0) | PATH_PARAMETER
        write(INTAKE, request(flags, event["rawPath"], event["headers"], event.get("body", "").encode()))
    # Every provider fixture, signed for its source: accepted (202).
    type_headers = {"github": {"X-GitHub-Event": "push"}, "shopify": {"X-Shopify-Topic": "orders/create"}}
    for source, _, raw in payloads():
        headers = {"content-type": "application/json", **type_headers.get(source, {})}
        write(INTAKE, request(SIGN | PATH_PARAMETER, f"/hooks/{source}", headers, raw))
        write(INTAKE, request(SIGN | BASE64, f"/hooks/{source}", headers, base64.b64encode(raw)))
    write(INTAKE, request(SIGN, "/hooks/stripe", {"X-Correlation-Id": "corr-1"}, b'{"type":"x"}'))
    write(INTAKE, request(GET | SIGN, "/hooks/stripe/", {}, b"{}"))
    write(INTAKE, request(NO_BODY | SIGN, "/prefix/hooks/github", {}, b""))
    write(INTAKE, request(SIGN | BASE64, "/hooks/acme", {}, b"not base64!"))


if __name__ == "__main__":
    signature_seeds()
    message_seeds()
    flow_file_seeds()
    redact_seeds()
    intake_seeds()
    for directory in sorted(CORPUS.iterdir()):
        files = list(directory.iterdir())
        print(f"{directory.name:20} {len(files):3} seeds {sum(f.stat().st_size for f in files):7} bytes")
