use super::*;

const SOURCES: &str = r#"
[sources.stripe]
scheme = "stripe"
event_id = "/id"
event_type = "/type"

[destinations.crm]
base_url = "http://127.0.0.1:3001/"
"#;

fn files(rel: &str) -> Result<String, ConfigError> {
    match rel {
        "m.jq" => Ok("{email: .data.object.receipt_email}".to_owned()),
        "bad.jq" => Ok("{email: .data.object.receipt_email".to_owned()),
        "c.json" => Ok(r#"{"type":"object","required":["email"]}"#.to_owned()),
        "notjson.json" => Ok("{".to_owned()),
        "notschema.json" => Ok(r#"{"type":"no such type"}"#.to_owned()),
        other => Err(ConfigError::Read { path: other.to_owned(), message: "no such file".to_owned() }),
    }
}

fn with_flow(flow: &str) -> Result<Config, ConfigError> {
    Config::parse("test.toml", &format!("{SOURCES}\n[[flows]]\n{flow}"), files)
}

const GOOD_FLOW: &str = r#"
name = "f"
version = 1
source = "stripe"
mapping = "m.jq"
contract = "c.json"
destination = "crm"
path = "/api/contacts"
"#;

#[test]
fn the_bundled_flow_file_loads_and_declares_the_example_flow() {
    let config = Config::bundled().expect("bundled config must be valid");
    let flow = config.flows.iter().find(|f| f.name == "stripe-payment-to-crm-contact").unwrap();
    assert_eq!(flow.method, http::Method::POST);
    assert_eq!(flow.path, "/api/contacts");
    assert!(flow.accepts_type("payment_intent.succeeded"));
    assert!(!flow.accepts_type("charge.refunded"));
    assert!(config.sources.contains_key("stripe"));
    assert_eq!(config.sources["stripe"].secret, "source/stripe");
}

#[test]
fn the_checked_in_flow_file_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/flows.toml");
    let config = Config::load(&path).unwrap();
    assert!(!config.flows.is_empty());
}

#[test]
fn a_valid_flow_is_resolved_with_defaults() {
    let config = with_flow(GOOD_FLOW).unwrap();
    let flow = &config.flows[0];
    assert_eq!(flow.mode, Mode::Live);
    assert!(flow.accepts_type("anything"), "no event_types means every type");
    assert_eq!(config.destinations["crm"].base_url, "http://127.0.0.1:3001", "trailing slash trimmed");
    assert_eq!(config.destinations["crm"].retry, RetryPolicy::default());
}

#[test]
fn a_flow_naming_an_unknown_source_or_destination_is_refused() {
    let e = with_flow(&GOOD_FLOW.replace("source = \"stripe\"", "source = \"github\"")).unwrap_err();
    assert!(e.to_string().contains("unknown source"), "{e}");
    let e = with_flow(&GOOD_FLOW.replace("destination = \"crm\"", "destination = \"erp\"")).unwrap_err();
    assert!(e.to_string().contains("unknown destination"), "{e}");
}

#[test]
fn a_mapping_that_does_not_compile_loads_but_fails_the_program_check_the_jq_functions_run() {
    let config = with_flow(&GOOD_FLOW.replace("m.jq", "bad.jq")).expect("loading only keeps the program's text");
    let e = config.check_programs(Programs::All).unwrap_err();
    assert!(matches!(e, ConfigError::Mapping(MappingError::Compile { .. })), "{e}");
    with_flow(GOOD_FLOW).unwrap().check_programs(Programs::All).expect("the good mapping compiles");
}

#[test]
fn every_program_of_the_bundled_flow_file_compiles() {
    let config = Config::bundled().unwrap();
    config.check_programs(Programs::All).expect("bundled programs compile");
}

#[test]
fn a_missing_file_or_a_contract_that_is_not_json_is_refused() {
    let e = with_flow(&GOOD_FLOW.replace("m.jq", "missing.jq")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    let e = with_flow(&GOOD_FLOW.replace("c.json", "notjson.json")).unwrap_err();
    assert!(e.to_string().contains("contract notjson.json"), "{e}");
}

#[test]
fn a_contract_that_is_not_a_schema_loads_but_fails_the_contract_check_the_mapper_runs() {
    let config = with_flow(&GOOD_FLOW.replace("c.json", "notschema.json")).expect("loading only parses the schema");
    let e = config.check_contracts().unwrap_err();
    assert!(e.to_string().contains("contract notschema.json has an invalid schema"), "{e}");
    let good = with_flow(GOOD_FLOW).unwrap();
    good.check_contracts().expect("a valid schema compiles");
    let contract = good.flows[0].contract.as_ref().unwrap();
    assert!(contract.validate(&serde_json::json!({"email": "a@b.c"})).is_ok());
    assert!(contract.validate(&serde_json::json!({})).is_err());
}

#[test]
fn a_misspelt_flow_key_is_refused_rather_than_ignored() {
    let e = with_flow(&format!("{GOOD_FLOW}\nmdoe = \"dark\"")).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn a_flow_may_have_a_dark_version_beside_its_live_one_but_never_two_live_ones() {
    let v2 = GOOD_FLOW.replace("version = 1", "version = 2");
    let text = format!("{SOURCES}\n[[flows]]\n{GOOD_FLOW}\n[[flows]]\n{v2}\nmode = \"dark\"");
    let config = Config::parse("t.toml", &text, files).expect("live v1 and dark v2");
    assert_eq!(config.live_flow("f").map(|f| f.version), Some(1));
    assert_eq!(config.flow("f", 2).map(|f| f.mode), Some(Mode::Dark));
    assert!(config.has_dark_version("f"));
    let text = format!("{SOURCES}\n[[flows]]\n{GOOD_FLOW}\n[[flows]]\n{v2}");
    let e = Config::parse("t.toml", &text, files).unwrap_err();
    assert!(e.to_string().contains("v1 is live too"), "{e}");
}

#[test]
fn a_flow_declared_twice_is_refused() {
    let text = format!("{SOURCES}\n[[flows]]\n{GOOD_FLOW}\n[[flows]]\n{GOOD_FLOW}");
    let e = Config::parse("t.toml", &text, files).unwrap_err();
    assert!(e.to_string().contains("declared twice"), "{e}");
}

#[test]
fn bad_paths_methods_and_names_are_refused() {
    assert!(with_flow(&GOOD_FLOW.replace("/api/contacts", "api/contacts")).is_err());
    assert!(with_flow(&format!("{GOOD_FLOW}\nmethod = \"P O S T\"")).is_err());
    assert!(with_flow(&GOOD_FLOW.replace("name = \"f\"", "name = \"F!\"")).is_err());
}

#[test]
fn a_source_event_id_that_is_not_a_json_pointer_is_refused() {
    let text = SOURCES.replace("event_id = \"/id\"", "event_id = \"id\"");
    let e = Config::parse("t.toml", &text, files).unwrap_err();
    assert!(e.to_string().contains("JSON pointer"), "{e}");
}

#[test]
fn a_sources_rotation_grace_defaults_to_a_day_and_cannot_be_negative() {
    let config = Config::parse("t.toml", SOURCES, files).unwrap();
    assert_eq!(config.sources["stripe"].rotation_grace_secs, 86_400);
    let text = SOURCES.replace("scheme = \"stripe\"", "scheme = \"stripe\"\nrotation_grace_secs = 2");
    assert_eq!(Config::parse("t.toml", &text, files).unwrap().sources["stripe"].rotation_grace_secs, 2);
    let text = SOURCES.replace("scheme = \"stripe\"", "scheme = \"stripe\"\nrotation_grace_secs = -1");
    let e = Config::parse("t.toml", &text, files).unwrap_err();
    assert!(e.to_string().contains("rotation_grace_secs"), "{e}");
}

#[test]
fn an_unknown_signature_scheme_is_refused() {
    let text = SOURCES.replace("scheme = \"stripe\"", "scheme = \"carrier-pigeon\"");
    assert!(Config::parse("t.toml", &text, files).is_err());
}

#[test]
fn a_destination_with_a_non_http_url_or_zero_budget_is_refused() {
    let text = SOURCES.replace("http://127.0.0.1:3001/", "ftp://x");
    assert!(Config::parse("t.toml", &text, files).is_err());
    let text = format!("{SOURCES}retry = {{ max_attempts = 0 }}\n");
    assert!(Config::parse("t.toml", &text, files).is_err());
}

#[test]
fn an_entity_version_without_an_ordering_key_is_refused() {
    let e = with_flow(&format!("{GOOD_FLOW}\nentity_version = \".created\"")).unwrap_err();
    assert!(e.to_string().contains("needs an ordering_key"), "{e}");
    assert!(with_flow(&format!("{GOOD_FLOW}\nentity_version = \".created\"\nordering_key = \".id\"")).is_ok());
}

fn with_destination(lines: &str) -> Result<Config, ConfigError> {
    Config::parse("t.toml", &format!("{SOURCES}{lines}\n"), files)
}

#[test]
fn every_auth_kind_is_read_from_its_toml_table() {
    let cases = [
        (
            r#"auth = { kind = "api_key", secret = "destination/crm" }"#,
            Auth::ApiKey { header: "X-Api-Key".into(), secret: "destination/crm".into() },
        ),
        (
            r#"auth = { kind = "bearer", secret = "destination/crm" }"#,
            Auth::Bearer { secret: "destination/crm".into() },
        ),
        (r#"auth = { kind = "basic", secret = "destination/crm" }"#, Auth::Basic { secret: "destination/crm".into() }),
        (
            r#"auth = { kind = "oauth2_client_credentials", token_url = "https://id.example/token", scope = "contacts:write", secret = "destination/crm" }"#,
            Auth::OAuth2ClientCredentials {
                token_url: "https://id.example/token".into(),
                scope: Some("contacts:write".into()),
                audience: None,
                secret: "destination/crm".into(),
            },
        ),
    ];
    for (line, auth) in cases {
        let config = with_destination(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(config.destinations["crm"].auth, auth);
        assert_eq!(auth.secret(), Some("destination/crm"));
    }
    assert_eq!(with_destination("").unwrap().destinations["crm"].auth, Auth::None);
    assert_eq!(Auth::None.secret(), None);
}

#[test]
fn an_auth_kind_that_cannot_work_is_refused_at_load() {
    for line in [
        r#"auth = { kind = "digest", secret = "destination/crm" }"#,
        r#"auth = { kind = "bearer" }"#,
        r#"auth = { kind = "bearer", secret = "destination/crm", header = "X-Token" }"#,
        r#"auth = { kind = "bearer", secret = "" }"#,
        r#"auth = { kind = "api_key", header = "Bad Header", secret = "destination/crm" }"#,
        r#"auth = { kind = "oauth2_client_credentials", secret = "destination/crm" }"#,
        r#"auth = { kind = "oauth2_client_credentials", token_url = "id.example/token", secret = "destination/crm" }"#,
    ] {
        assert!(with_destination(line).is_err(), "{line} was accepted");
    }
}

#[test]
fn outbound_signing_is_standard_webhooks_with_a_default_secret_name() {
    let config = with_destination(r#"signing = { scheme = "standard_webhooks" }"#).unwrap();
    let signing = config.destinations["crm"].signing.clone().unwrap();
    assert_eq!(signing, Signing { scheme: SigningScheme::StandardWebhooks, secret: "destination/crm-signing".into() });
    assert_eq!(signing.scheme.scheme(), Scheme::StandardWebhooks);
    let config =
        with_destination(r#"signing = { scheme = "standard_webhooks", secret = "destination/other" }"#).unwrap();
    assert_eq!(config.destinations["crm"].signing.as_ref().unwrap().secret, "destination/other");
    assert!(with_destination("").unwrap().destinations["crm"].signing.is_none());
    assert!(with_destination(r#"signing = { scheme = "stripe" }"#).is_err(), "only Standard Webhooks is sent");
}

#[test]
fn a_flows_sensitive_fields_are_masked_in_log_lines_once_the_flow_file_is_loaded() {
    with_flow(&format!("{GOOD_FLOW}\nsensitive = [\"loyalty_number\"]")).unwrap();
    let line = r#"{"message":"x","loyalty_number":"LN-0042-7"}"#;
    let masked = crate::redact::redact(line);
    assert!(!masked.contains("LN-0042-7"), "{masked}");
}

#[test]
fn a_destination_url_variable_replaces_the_flow_files_base_url_and_must_be_http() {
    // A destination name of this test's own: the environment is shared by every test.
    let text = "[destinations.env-override-probe]\nbase_url = \"http://127.0.0.1:3001\"\n";
    let load = || Config::parse("test.toml", text, files).unwrap();
    let var = destination_url_var("env-override-probe");
    assert_eq!(var, "SWITCHYARD_DESTINATION_ENV_OVERRIDE_PROBE_URL");

    let mut untouched = load();
    untouched.apply_destination_env().unwrap();
    assert_eq!(untouched.destinations["env-override-probe"].base_url, "http://127.0.0.1:3001");

    std::env::set_var(&var, "https://crm.example.com/");
    let mut overridden = load();
    let applied = overridden.apply_destination_env();
    std::env::set_var(&var, "ftp://crm.example.com");
    let refused = load().apply_destination_env();
    std::env::remove_var(&var);
    applied.unwrap();
    assert_eq!(overridden.destinations["env-override-probe"].base_url, "https://crm.example.com");
    assert!(refused.unwrap_err().to_string().contains(&var));
}

#[test]
fn every_number_in_the_flow_file_is_range_checked_naming_the_field_and_range() {
    let source = |extra: &str| {
        Config::parse("test.toml", &format!("[sources.s]\nscheme = \"stripe\"\n{extra}\n"), files).map(|_| ())
    };
    let destination = |extra: &str| {
        let text = format!("[destinations.d]\nbase_url = \"http://127.0.0.1:1\"\n{extra}\n");
        Config::parse("test.toml", &text, files).map(|_| ())
    };
    let cases = [
        (source("tolerance_secs = 0"), "source s: tolerance_secs must be from 1 to 3600, got 0"),
        (source("tolerance_secs = 86400"), "tolerance_secs must be from 1 to 3600"),
        (source("rotation_grace_secs = -1"), "rotation_grace_secs must be from 0 to 2592000, got -1"),
        (destination("timeout_ms = 0"), "destination d: timeout_ms must be from 1 to 60000, got 0"),
        (destination("timeout_ms = 600000"), "timeout_ms must be from 1 to 60000"),
        (destination("retry = { max_attempts = 0 }"), "retry.max_attempts must be from 1 to 100, got 0"),
        (destination("retry = { max_delay_ms = 86400000 }"), "retry.max_delay_ms must be from 1 to 43200000"),
        (
            destination("retry = { base_delay_ms = 5000, max_delay_ms = 1000 }"),
            "retry.base_delay_ms must be from 0 to 1000, got 5000",
        ),
        (
            destination("retry = { max_age_secs = 9223372036854775807 }"),
            "retry.max_age_secs must be from 1 to 1209600, got 9223372036854775807",
        ),
    ];
    for (result, expected) in cases {
        let err = result.expect_err(expected).to_string();
        assert!(err.contains(expected), "{err}");
    }
    assert!(destination("timeout_ms = 60000\nretry = { max_delay_ms = 43200000, max_age_secs = 1209600 }").is_ok());
}

#[test]
fn an_slo_outside_its_ranges_is_refused_and_a_late_or_parked_event_spends_its_share_of_the_budget() {
    let flow = |slo: &str| with_flow(&format!("{GOOD_FLOW}slo = {slo}\n"));
    let ok = flow("{ within_secs = 120, objective = 0.995 }").expect("valid");
    let slo = ok.flows[0].slo.unwrap();
    assert_eq!(slo.budget_spent(Some(120_000)), 0.0);
    assert!((slo.budget_spent(Some(120_001)) - 200.0).abs() < 1e-6, "1 / (1 - 0.995)");
    assert!((slo.budget_spent(None) - 200.0).abs() < 1e-6, "parked counts as late");
    for bad in
        ["{ within_secs = 0, objective = 0.99 }", "{ within_secs = 60, objective = 1.0 }", "{ within_secs = 60 }"]
    {
        assert!(flow(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn a_rate_limit_or_breaker_out_of_range_or_misspelt_is_refused() {
    let with_destination =
        |extra: &str| Config::parse("t.toml", &format!("{SOURCES}{extra}\n[[flows]]\n{GOOD_FLOW}"), files);
    let ok = with_destination("rate_limit = { per_second = 10 }\nbreaker = { failures = 3 }").expect("valid");
    let crm = ok.destination("crm").unwrap();
    assert_eq!(crm.rate_limit.unwrap().burst(), 10, "burst defaults to per_second");
    assert_eq!(crm.breaker.unwrap().cooldown_secs, 30);
    assert!(crm.is_gated());
    for bad in [
        "rate_limit = { per_second = 0 }",
        "rate_limit = { per_second = 10, burst = 0 }",
        "rate_limit = { per_second = 10, brust = 5 }",
        "breaker = { failures = 0 }",
        "breaker = { cooldown_secs = 901 }",
        "breaker = { failure_rate = 0.0 }",
        "breaker = { failure_rate = 1.5 }",
        "breaker = { failure_rate = 0.5, window_secs = 0 }",
        "breaker = { failure_rate = 0.5, min_calls = 0 }",
    ] {
        assert!(with_destination(bad).is_err(), "{bad} was accepted");
    }
}

const POLL: &str = r#"
[sources.orders]
kind = "poll"
url = "https://erp.example.com/api/orders/"
auth = { kind = "bearer", secret = "source/orders" }
cursor = { param = "updated_since", initial = "1970-01-01T00:00:00Z", next = ".next" }
records = ".orders"
id = ".id"
version = ".updated_at"
event_type = "order.updated"
"#;

#[test]
fn a_polling_source_loads_with_its_jq_and_defaults_and_is_no_webhook_source() {
    let config = Config::parse("t.toml", POLL, files).expect("a polling source");
    let p = &config.polls["orders"];
    assert_eq!(p.url, "https://erp.example.com/api/orders", "trailing slash trimmed");
    assert_eq!((p.every.as_secs(), p.max_pages, p.timeout.as_millis()), (60, 100, 10_000));
    assert!(p.more.is_none() && p.archive);
    let page = serde_json::json!({"orders": [{"id": "o1", "updated_at": "t1"}], "next": "t1"});
    assert_eq!(p.records.run_one(&page).unwrap()[0]["id"], "o1");
    assert_eq!(p.next_cursor.run_one(&page).unwrap(), "t1");
    assert!(config.sources.is_empty(), "intake answers a polling source's name with 404 unknown_source");
    assert!(config.archives("orders"));
    let oauth = POLL.replace(
        r#"auth = { kind = "bearer", secret = "source/orders" }"#,
        r#"auth = { kind = "oauth2_client_credentials", token_url = "https://erp.example.com/token", secret = "source/orders" }"#,
    );
    let endpoint =
        Config::parse("t.toml", &oauth, files).expect("oauth2 for a polling source").polls["orders"].endpoint();
    assert_eq!(
        (endpoint.base_url.as_str(), endpoint.auth.kind()),
        ("https://erp.example.com/api/orders", "oauth2_client_credentials")
    );
    let bundled = Config::bundled().unwrap();
    assert!(bundled.polls.contains_key("legacy-orders"), "the example polling source");
    assert_eq!(bundled.polls["legacy-orders"].url_variable(), "SWITCHYARD_SOURCE_LEGACY_ORDERS_URL");
}

#[test]
fn a_polling_source_with_a_bad_setting_is_refused_naming_it() {
    for (change, expect) in [
        (("https://erp.example.com/api/orders/", "ftp://erp"), "url must be an http(s) URL"),
        (("records = \".orders\"", "records = \".orders\"\nevery_secs = 5"), "every_secs must be from 60"),
        (
            (
                "auth = { kind = \"bearer\", secret = \"source/orders\" }",
                "auth = { kind = \"webhook_url\", secret = \"x\" }",
            ),
            "none, api_key, bearer, basic or oauth2_client_credentials",
        ),
        (("records = \".orders\"", "records = \".orders[\""), "records"),
        (("records = \".orders\"", "records = \".orders\"\nrecrods = \".x\""), "unknown field"),
    ] {
        let text = POLL.replace(change.0, change.1);
        // A program that does not compile is found by the check the poller's cold start runs.
        let e = Config::parse("t.toml", &text, files)
            .and_then(|c| c.check_programs(Programs::All))
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{change:?}: {e}");
    }
}

#[test]
fn each_function_compiles_only_the_programs_it_runs_so_a_broken_poll_program_stops_the_poller_not_the_mapper() {
    let broken = Config::parse("t.toml", &POLL.replace("records = \".orders\"", "records = \".orders[\""), files)
        .expect("loading keeps the text");
    broken.check_programs(Programs::Flows).expect("the mapper does not run a polling source's jq");
    let e = broken.check_programs(Programs::Polls).unwrap_err().to_string();
    assert!(e.contains("orders records"), "{e}");
    assert!(broken.check_programs(Programs::All).is_err());
}
