//! Where the local runner sends each destination's deliveries, resolved as a deployed
//! function resolves them, plus one local rule for the sink.
//!
//! The flow file's example destinations point at the sink of `make run`
//! (`http://127.0.0.1:3001`). When `serve --sink ADDR` moves the sink, those
//! destinations move with it: a new user who moves the sink expects the example CRM's
//! deliveries to land in it, not in whatever else listens on 3001. Then, exactly as in
//! AWS, `SWITCHYARD_DESTINATION_{NAME}_URL` overrides the URL of its destination —
//! it wins over the sink too. The banner prints the outcome.

use std::fmt;
use std::net::SocketAddr;

use switchyard_common::config::{destination_url_var, Auth, Config, ConfigError};

/// The sink address the flow file's example destinations name.
pub const DEFAULT_SINK: &str = "127.0.0.1:3001";

/// Why a destination points where it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Its flow-file `base_url` is the default sink address: it follows the sink.
    Sink,
    /// `SWITCHYARD_DESTINATION_{NAME}_URL` (the variable's name).
    Env(String),
    /// Its flow-file `base_url`, untouched.
    FlowFile,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    pub url: String,
    pub why: Why,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match &self.why {
            Why::Sink => "the local sink".to_owned(),
            Why::Env(var) => var.clone(),
            Why::FlowFile => "base_url in the flow file".to_owned(),
        };
        write!(f, "{} → {} ({why})", self.destination, self.url)
    }
}

/// Points `config`'s destinations where deliveries will really go, with `sink` the
/// address the sink listens on; returns one route per destination, for the banner.
pub fn resolve(config: &mut Config, sink: SocketAddr) -> Result<Vec<Route>, ConfigError> {
    let default_sink = format!("http://{DEFAULT_SINK}");
    let mut follows_sink = Vec::new();
    for d in config.destinations.values_mut() {
        if d.base_url == default_sink {
            d.base_url = format!("http://{sink}");
            follows_sink.push(d.name.clone());
        }
        // An OAuth2 token endpoint on the default sink (the sink answers as one) moves too.
        if let Auth::OAuth2ClientCredentials { token_url, .. } = &mut d.auth {
            if let Some(path) = token_url.strip_prefix(&default_sink) {
                *token_url = format!("http://{sink}{path}");
            }
        }
    }
    config.apply_destination_env()?;
    Ok(config
        .destinations
        .values()
        .map(|d| {
            let var = destination_url_var(&d.name);
            let why = if std::env::var_os(&var).is_some() {
                Why::Env(var)
            } else if follows_sink.contains(&d.name) {
                Why::Sink
            } else {
                Why::FlowFile
            };
            Route { destination: d.name.clone(), url: d.base_url.clone(), why }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = r#"
[destinations.crm]
base_url = "http://127.0.0.1:3001"

[destinations.billing-probe]
base_url = "https://billing.example.com"

[destinations.env-probe]
base_url = "http://127.0.0.1:3001"
"#;
        Config::parse("test.toml", text, |p| {
            Err(ConfigError::Read { path: p.to_owned(), message: "no files".to_owned() })
        })
        .unwrap()
    }

    #[test]
    fn destinations_on_the_default_sink_follow_a_moved_sink_and_an_env_url_wins_over_it() {
        std::env::set_var("SWITCHYARD_DESTINATION_ENV_PROBE_URL", "http://127.0.0.1:9999/");
        let mut config = config();
        let routes = resolve(&mut config, "127.0.0.1:4001".parse().unwrap());
        std::env::remove_var("SWITCHYARD_DESTINATION_ENV_PROBE_URL");
        let routes = routes.unwrap();
        let route = |name: &str| routes.iter().find(|r| r.destination == name).unwrap().clone();

        assert_eq!(route("crm").url, "http://127.0.0.1:4001");
        assert_eq!(route("crm").why, Why::Sink);
        assert_eq!(config.destinations["crm"].base_url, "http://127.0.0.1:4001");
        assert_eq!(route("billing-probe").url, "https://billing.example.com");
        assert_eq!(route("billing-probe").why, Why::FlowFile);
        assert_eq!(route("env-probe").url, "http://127.0.0.1:9999");
        assert_eq!(route("env-probe").why, Why::Env("SWITCHYARD_DESTINATION_ENV_PROBE_URL".to_owned()));
        assert_eq!(config.destinations["env-probe"].base_url, "http://127.0.0.1:9999");
        assert_eq!(
            route("crm").to_string(),
            "crm → http://127.0.0.1:4001 (the local sink)",
            "the banner line the end-to-end test reads"
        );
    }
}
