//! DNS on a helper thread: the signaling thread never blocks on a lookup.
//!
//! The helper runs hickory's resolver on its own current-thread tokio runtime. The loop hands it a query
//! (non-blocking channel send); the answer comes back as plain data through the loop's lock-free control queue
//! and an eventfd write.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use super::handler::Transport;
use super::shared::{Control, Shared};

/// Identifies one query; returned by `Io::resolve` and passed back with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DnsRequestId(pub u64);

/// What to look up. Names are taken as given; a trailing dot avoids search-domain expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// IPv4 addresses.
    A(String),
    /// IPv6 addresses.
    Aaaa(String),
    /// SRV records of a full service name such as `_sip._udp.example.com.`.
    Srv(String),
}

impl DnsQuery {
    /// The RFC 3263 SRV query for a SIP domain and transport (`_sips._tcp` for TLS).
    pub fn sip_srv(domain: &str, transport: Transport) -> Self {
        let prefix = match transport {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        };
        DnsQuery::Srv(format!("{prefix}.{domain}"))
    }

    fn name(&self) -> &str {
        match self {
            DnsQuery::A(n) | DnsQuery::Aaaa(n) | DnsQuery::Srv(n) => n,
        }
    }

    fn record_type(&self) -> RecordType {
        match self {
            DnsQuery::A(_) => RecordType::A,
            DnsQuery::Aaaa(_) => RecordType::AAAA,
            DnsQuery::Srv(_) => RecordType::SRV,
        }
    }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host name as in the record (fully qualified, with trailing dot).
    pub target: String,
}

/// A successful answer. `ttl` is the smallest TTL of the records used, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    Ips { addrs: Vec<IpAddr>, ttl: u32 },
    Srv { records: Vec<SrvRecord>, ttl: u32 },
}

/// Why a query gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("name does not exist (NXDOMAIN)")]
    NxDomain,
    #[error("no records of the requested type")]
    NoRecords,
    #[error("query timed out")]
    Timeout,
    #[error("invalid name")]
    InvalidName,
    #[error("no DNS helper configured")]
    NotConfigured,
    #[error("DNS helper is gone")]
    HelperGone,
    #[error("resolver error: {0}")]
    Other(String),
}

/// A finished query travelling back to the loop.
#[derive(Debug)]
pub struct DnsCompletion {
    pub id: DnsRequestId,
    pub result: Result<DnsAnswer, DnsError>,
}

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers (UDP, with TCP fallback on truncation); empty means the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts per name server.
    pub attempts: usize,
    /// Upper bound for one query, retries included: reported as [`DnsError::Timeout`].
    pub overall_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            overall_timeout: Duration::from_secs(5),
        }
    }
}

/// The loop's side of the helper thread.
pub(crate) struct DnsHelper {
    tx: Option<tokio::sync::mpsc::UnboundedSender<(DnsRequestId, DnsQuery)>>,
    thread: Option<JoinHandle<()>>,
    next_id: u64,
}

impl DnsHelper {
    /// Starts the helper thread and builds the resolver on it (its runtime must be current while it is
    /// built); returns once the resolver exists or failed to build.
    pub(crate) fn start(config: DnsConfig, shared: Arc<Shared>) -> std::io::Result<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(DnsRequestId, DnsQuery)>();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
        let overall = config.overall_timeout;
        let thread =
            std::thread::Builder::new()
                .name("sig-dns".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let resolver = match build_resolver(&config) {
                            Ok(r) => Arc::new(r),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        while let Some((id, query)) = rx.recv().await {
                            let resolver = resolver.clone();
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let result =
                                    match tokio::time::timeout(overall, lookup(&resolver, &query))
                                        .await
                                    {
                                        Ok(r) => r,
                                        Err(_) => Err(DnsError::Timeout),
                                    };
                                shared.push(Control::Dns(DnsCompletion { id, result }));
                            });
                        }
                    });
                })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(std::io::Error::other("DNS helper thread died during start"));
            }
        }
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            next_id: 1,
        })
    }

    pub(crate) fn submit(&mut self, query: DnsQuery) -> Result<DnsRequestId, DnsError> {
        let id = DnsRequestId(self.next_id);
        self.next_id += 1;
        match &self.tx {
            Some(tx) => tx
                .send((id, query))
                .map(|_| id)
                .map_err(|_| DnsError::HelperGone),
            None => Err(DnsError::HelperGone),
        }
    }
}

impl Drop for DnsHelper {
    fn drop(&mut self) {
        // Closing the channel ends the helper's receive loop; queries still running are dropped with the
        // runtime.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build_resolver(config: &DnsConfig) -> std::io::Result<TokioResolver> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.nameservers.is_empty() {
        Resolver::builder(provider).map_err(|e| std::io::Error::other(e.to_string()))?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = config.timeout;
    opts.attempts = config.attempts;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    builder
        .build()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

async fn lookup(resolver: &TokioResolver, query: &DnsQuery) -> Result<DnsAnswer, DnsError> {
    let lookup = resolver
        .lookup(query.name(), query.record_type())
        .await
        .map_err(|e| {
            if e.is_nx_domain() {
                DnsError::NxDomain
            } else if e.is_no_records_found() {
                DnsError::NoRecords
            } else if matches!(e, hickory_resolver::net::NetError::Timeout) {
                DnsError::Timeout
            } else {
                DnsError::Other(e.to_string())
            }
        })?;
    let mut ttl = u32::MAX;
    match query {
        DnsQuery::A(_) | DnsQuery::Aaaa(_) => {
            let mut addrs = Vec::new();
            for r in lookup.answers() {
                let ip = match &r.data {
                    RData::A(a) => IpAddr::V4(a.0),
                    RData::AAAA(a) => IpAddr::V6(a.0),
                    _ => continue,
                };
                ttl = ttl.min(r.ttl);
                addrs.push(ip);
            }
            if addrs.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(DnsAnswer::Ips { addrs, ttl })
        }
        DnsQuery::Srv(_) => {
            let mut records = Vec::new();
            for r in lookup.answers() {
                if let RData::SRV(s) = &r.data {
                    ttl = ttl.min(r.ttl);
                    records.push(SrvRecord {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_string(),
                    });
                }
            }
            if records.is_empty() {
                return Err(DnsError::NoRecords);
            }
            records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
            Ok(DnsAnswer::Srv { records, ttl })
        }
    }
}
