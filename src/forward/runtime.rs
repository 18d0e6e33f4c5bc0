//! Forwarding at run time: opens the store, publishes the index the B2BUA reads, starts the admin server, and
//! routes the JSON API ([`handle`], called by [`super::admin`] once the request is signed in).
//!
//! The only thing the signaling thread ever sees is the `ForwardTable` pointer swap done by [`Forwarding`].
use super::admin::{Admin, AdminOptions};
use super::auth::LockoutPolicy;
use super::http::ApiServer;
use super::store::{Forwarding, StoreError};
use super::{Catalog, FieldError, Forward, empty_table};
use crate::config::Config;
use crate::mgmt::LivePublisher;
use anyhow::Context;
use serde::Serialize;
use std::sync::Arc;

/// The OpenAPI 3 document of this API (kept in the repo next to this file).
pub const OPENAPI: &str = include_str!("openapi.json");

/// What `tollgate run` keeps alive while it serves: the forwarding service and the admin server.
pub struct ForwardRuntime {
    pub forwarding: Arc<Forwarding>,
    pub admin: Option<Arc<Admin>>,
    pub api: Option<ApiServer>,
}

/// Opens `[forwarding] db` (a corrupt, foreign, locked or newer file is an error, never an empty table), loads
/// the index and starts the API and console on `[forwarding] api` (over TLS when `tls_cert`/`tls_key` are set).
/// `Ok(None)`: forwarding is not configured.
pub fn start(cfg: &Config) -> anyhow::Result<Option<ForwardRuntime>> {
    let f = &cfg.forwarding;
    let Some(db) = &f.db else {
        return Ok(None);
    };
    let forwarding = Forwarding::open(db, Catalog::from_config(cfg), empty_table())?;
    tracing::info!(db = %db.display(), forwards = forwarding.table().load().len(), "forwarding loaded");
    let Some(addr) = f.api else {
        return Ok(Some(ForwardRuntime {
            forwarding,
            admin: None,
            api: None,
        }));
    };
    let tls = match &f.tls {
        Some(files) => Some(Arc::new(
            crate::signaling::tls::build_server_config(
                &crate::signaling::tls::TlsServerFiles::single(&files.cert, &files.key),
            )
            .with_context(|| format!("forwarding.tls_cert {}", files.cert.display()))?,
        )),
        None => None,
    };
    let admin = Arc::new(Admin::new(
        forwarding.clone(),
        db.clone(),
        AdminOptions {
            node: cfg.node.name.clone(),
            lockout: LockoutPolicy {
                after: f.lockout_after,
                window: f.lockout,
            },
            secure: tls.is_some(),
        },
    ));
    let api = ApiServer::start(addr, admin.clone(), tls)
        .with_context(|| format!("forwarding API on {addr}"))?;
    tracing::info!(addr = %api.local_addr(), tls = f.tls.is_some(), "forwarding API and console listening");
    Ok(Some(ForwardRuntime {
        forwarding,
        admin: Some(admin),
        api: Some(api),
    }))
}

impl ForwardRuntime {
    pub fn table(&self) -> super::ForwardTable {
        self.forwarding.table().clone()
    }

    /// Lets the console and `/api/trunks` show the live call count per trunk the signaling thread publishes.
    pub fn attach_live(&self, live: Arc<LivePublisher>) {
        if let Some(a) = &self.admin {
            a.attach_live(live);
        }
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

pub(super) fn json<T: Serialize>(status: u16, v: &T) -> Response {
    Response {
        status,
        body: serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
    }
}

pub(super) fn error(status: u16, msg: &str, errors: Vec<FieldError>) -> Response {
    json(status, &ErrorBody { error: msg, errors })
}

fn field(field: &'static str, reason: impl Into<String>) -> Vec<FieldError> {
    vec![FieldError {
        field,
        reason: reason.into(),
    }]
}

pub(super) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::Invalid(errs) => error(400, "invalid forward", errs),
        StoreError::Exists(n) => error(409, &format!("a forward for {n} already exists"), vec![]),
        StoreError::NotFound(n) => error(404, &format!("no forward for {n}"), vec![]),
        e => {
            tracing::error!(error = %e, "forwarding API");
            error(500, &e.to_string(), vec![])
        }
    }
}

/// A body that is not a forward is answered 400 naming the offending field (`body` when it is not JSON).
fn parse_forward(body: &[u8]) -> Result<Forward, Response> {
    let bad = |f: &str, reason: String| {
        let f: &'static str = FIELDS.iter().find(|x| **x == f).copied().unwrap_or("body");
        // An unknown key is not a FIELDS name; say which in the reason.
        error(400, "invalid forward", field(f, reason))
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(bad("body", "must be a JSON object".into()));
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad("body", format!("unknown field `{k}`")));
    }
    let e = match serde_json::from_value::<Forward>(v.clone()) {
        Ok(f) => return Ok(f),
        Err(e) => e.to_string(),
    };
    if let Some(f) = FIELDS
        .iter()
        .find(|f| e.starts_with(&format!("missing field `{f}`")))
    {
        return Err(bad(f, "is required".into()));
    }
    // A type error names no field: find the one that fails on its own in an otherwise valid forward.
    for (k, val) in obj {
        let mut t = serde_json::json!({"number": "", "target": "", "trunk": ""});
        t[k.as_str()] = val.clone();
        if let Err(e) = serde_json::from_value::<Forward>(t) {
            return Err(bad(k, e.to_string()));
        }
    }
    Err(bad("body", e))
}

const FIELDS: [&str; 7] = [
    "number",
    "target",
    "trunk",
    "ring_timeout_s",
    "caller_id",
    "fallback",
    "enabled",
];

#[derive(Serialize)]
struct NumberView<'a> {
    number: &'a str,
    forward: Option<&'a Forward>,
}

/// A trunk as `/api/trunks` shows it; the counts are `null` until the signaling thread has published.
#[derive(Serialize)]
pub struct TrunkLiveView<'a> {
    pub name: &'a str,
    pub active_calls: Option<u32>,
    pub max_calls: Option<u32>,
}

/// Routes one request (sans-IO, so tests and the server share it). `who` goes into the audit log.
pub fn handle(fw: &Forwarding, method: &str, path: &str, body: &[u8], who: &str) -> Response {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/api/openapi.json") => Response {
            status: 200,
            body: OPENAPI.to_owned(),
        },
        ("GET", "/api/forwards") => match fw.list() {
            Ok(all) => json(200, &all),
            Err(e) => store_error(e),
        },
        ("POST", "/api/forwards") => {
            let f = match parse_forward(body) {
                Ok(f) => f,
                Err(r) => return r,
            };
            match fw.add(&f, who) {
                Ok(()) => json(201, &f),
                Err(e) => store_error(e),
            }
        }
        ("GET", "/api/numbers") => match fw.list() {
            Ok(all) => {
                let v: Vec<NumberView> = fw
                    .catalog()
                    .numbers
                    .iter()
                    .map(|n| NumberView {
                        number: n,
                        forward: all.iter().find(|f| &f.number == n),
                    })
                    .collect();
                json(200, &v)
            }
            Err(e) => store_error(e),
        },
        ("GET", "/api/trunks") => {
            let v: Vec<TrunkLiveView> = fw
                .catalog()
                .trunks
                .iter()
                .map(|t| TrunkLiveView {
                    name: t,
                    active_calls: None,
                    max_calls: None,
                })
                .collect();
            json(200, &v)
        }
        ("GET", "/api/audit") => match fw.audit(100) {
            Ok(a) => json(200, &a),
            Err(e) => store_error(e),
        },
        (m, p) if p.starts_with("/api/forwards/") => {
            let number = &p["/api/forwards/".len()..];
            // `+` may arrive percent-encoded.
            let number = number.replace("%2B", "+").replace("%2b", "+");
            match m {
                "GET" => match fw.get(&number) {
                    Ok(Some(f)) => json(200, &f),
                    Ok(None) => error(404, &format!("no forward for {number}"), vec![]),
                    Err(e) => store_error(e),
                },
                "PUT" => {
                    let f = match parse_forward(body) {
                        Ok(f) => f,
                        Err(r) => return r,
                    };
                    if f.number != number {
                        return error(
                            400,
                            "invalid forward",
                            field(
                                "number",
                                format!(
                                    "body number `{}` differs from the path `{number}`",
                                    f.number
                                ),
                            ),
                        );
                    }
                    match fw.change(&f, who) {
                        Ok(_) => json(200, &f),
                        Err(e) => store_error(e),
                    }
                }
                "DELETE" => match fw.remove(&number, who) {
                    Ok(before) => json(200, &before),
                    Err(e) => store_error(e),
                },
                _ => error(405, "method not allowed", vec![]),
            }
        }
        (
            _,
            "/api/forwards" | "/api/numbers" | "/api/trunks" | "/api/audit" | "/api/openapi.json",
        ) => error(405, "method not allowed", vec![]),
        _ => error(404, "not found", vec![]),
    }
}
