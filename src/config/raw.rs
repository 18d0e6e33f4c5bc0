//! The file as written: serde shapes with spans on every value that validation looks at.
//!
//! Nothing here is interpreted; `validate` turns it into the typed `Config`. Fields an operator would not want
//! to write are `Option`s so that validation can apply defaults (some depend on the trunk's profile).

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub node: RawNode,
    #[serde(default)]
    pub listen: Vec<RawListen>,
    #[serde(default)]
    pub media: RawMedia,
    #[serde(default)]
    pub trunk: Vec<RawTrunk>,
    #[serde(default)]
    pub rule: Vec<RawRule>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub mgmt: RawMgmt,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub name: S<String>,
    pub fqdn: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub transport: S<String>,
    pub address: S<String>,
    pub tls_cert: Option<S<String>>,
    pub tls_key: Option<S<String>>,
    pub tls_ca: Option<S<String>>,
    pub trunk: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMedia {
    pub mode: Option<S<String>>,
    pub xdp_required: Option<S<bool>>,
    #[serde(default)]
    pub interface: Vec<RawInterface>,
    pub port_min: Option<S<i64>>,
    pub port_max: Option<S<i64>>,
    pub worker_cores: Option<S<Vec<S<i64>>>>,
    pub rtp_timeout_s: Option<S<i64>>,
    pub hold_timeout_s: Option<S<i64>>,
    pub port_quarantine_s: Option<S<i64>>,
    pub strict_latching: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterface {
    pub name: S<String>,
    pub role: S<String>,
    pub address: Option<S<String>>,
    pub public_address: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunk {
    pub name: S<String>,
    pub profile: Option<S<String>>,
    #[serde(default)]
    pub acl: Vec<S<String>>,
    #[serde(default)]
    pub targets: Vec<S<String>>,
    pub srv: Option<S<String>>,
    pub auth: Option<RawInboundAuth>,
    pub credentials: Option<RawCredentials>,
    pub health: Option<RawHealth>,
    pub failover_codes: Option<S<Vec<S<i64>>>>,
    pub target_timeout_ms: Option<S<i64>>,
    pub srtp: Option<RawSrtp>,
    pub codecs: Option<S<Vec<S<String>>>>,
    pub ptime: Option<S<i64>>,
    pub headers: Option<RawHeaders>,
    pub original_to_header: Option<S<String>>,
    pub caller_id_override: Option<S<String>>,
    pub max_calls: Option<S<i64>>,
    pub max_cps: Option<S<f64>>,
    pub refer: Option<S<String>>,
    pub session_timer: Option<RawSessionTimer>,
    pub numbering: Option<RawNumbering>,
    pub no_route_code: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInboundAuth {
    pub realm: S<String>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    pub nonce_ttl_s: Option<S<i64>>,
    pub algorithm: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub username: S<String>,
    pub password: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub username: S<String>,
    pub password: S<String>,
    pub realm: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub ping_interval_s: Option<S<i64>>,
    pub up_after: Option<S<i64>>,
    pub down_after: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSrtp {
    pub policy: Option<S<String>>,
    pub suites: Option<S<Vec<S<String>>>>,
    pub allow_sdes_without_tls: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    pub allow: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub rules: Vec<RawHeaderRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderRule {
    pub action: S<String>,
    pub name: S<String>,
    pub value: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessionTimer {
    pub enabled: Option<bool>,
    pub expires_s: Option<S<i64>>,
    pub min_se_s: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNumbering {
    pub country_code: S<String>,
    pub national_prefix: Option<S<String>>,
    pub international_prefix: Option<S<String>>,
    pub national_digits: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: Option<S<String>>,
    pub trunk: S<String>,
    #[serde(rename = "match")]
    pub pattern: S<String>,
    pub replace: S<String>,
    pub apply_to: Option<S<Vec<S<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Option<S<String>>,
    pub from: S<String>,
    pub number: Option<S<String>>,
    pub to: S<String>,
    pub priority: Option<S<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    pub max_requests_per_s: Option<S<i64>>,
    pub max_invites_per_s: Option<S<i64>>,
    pub ban_threshold: Option<S<i64>>,
    pub ban_duration_s: Option<S<i64>>,
    pub scanner_user_agents: Option<Vec<S<String>>>,
    pub max_message_size: Option<S<i64>>,
    pub max_headers: Option<S<i64>>,
    pub unauthorized: Option<S<String>>,
    pub tcp_max_connections: Option<S<i64>>,
    pub tcp_max_per_source: Option<S<i64>>,
    pub tcp_idle_timeout_s: Option<S<i64>>,
    pub tcp_message_timeout_ms: Option<S<i64>>,
    pub kernel_bans: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMgmt {
    pub http: Option<S<String>>,
    pub control_socket: Option<S<String>>,
    pub drain_timeout_s: Option<S<i64>>,
    pub cdr_file: Option<S<String>>,
    pub sip_trace_pcap: Option<S<String>>,
    pub sip_trace_max_mb: Option<S<i64>>,
    pub sip_trace_hep: Option<S<String>>,
    pub hep_capture_id: Option<S<i64>>,
    pub hep_auth_key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForwarding {
    pub db: Option<S<String>>,
    pub api: Option<S<String>>,
    pub numbers: Option<Vec<S<String>>>,
    pub lockout_after: Option<S<i64>>,
    pub lockout_s: Option<S<i64>>,
    pub tls_cert: Option<S<String>>,
    pub tls_key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub level: Option<S<String>>,
    pub format: Option<S<String>>,
}
