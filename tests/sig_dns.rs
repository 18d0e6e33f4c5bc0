//! DNS through the helper thread against a tiny in-process DNS server on 127.0.0.1: A, AAAA, SRV answers,
//! NXDOMAIN and timeout as typed errors, completions delivered on the loop thread.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tollgate::signaling::{
    ConnEvent, ConnId, DnsAnswer, DnsConfig, DnsError, DnsQuery, DnsRequestId, Io, ListenerId,
    SigConfig, SigLoop, SipHandler, SrvRecord, StreamBuf, TimerToken, Transport,
};

const WAIT: Duration = Duration::from_secs(5);

/// Answers `sip.test.` (A, AAAA), `_sip._udp.test.` (SRV); never answers `slow.test.`; NXDOMAIN otherwise.
fn dns_server(stop: Arc<AtomicBool>) -> (SocketAddr, JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = req.queries.first().cloned() else {
                continue;
            };
            let name = q.name().to_ascii().to_ascii_lowercase();
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.add_query(q.clone());
            let owner = q.name().clone();
            match (name.as_str(), q.query_type()) {
                ("slow.test.", _) => continue,
                ("sip.test.", RecordType::A) => {
                    resp.add_answer(Record::from_rdata(
                        owner.clone(),
                        300,
                        RData::A(A::new(192, 0, 2, 10)),
                    ));
                    resp.add_answer(Record::from_rdata(
                        owner,
                        60,
                        RData::A(A::new(192, 0, 2, 11)),
                    ));
                }
                ("sip.test.", RecordType::AAAA) => {
                    resp.add_answer(Record::from_rdata(
                        owner,
                        120,
                        RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                    ));
                }
                ("_sip._udp.test.", RecordType::SRV) => {
                    let srv = |p, w, port, t: &str| {
                        RData::SRV(SRV::new(p, w, port, Name::from_ascii(t).unwrap()))
                    };
                    resp.add_answer(Record::from_rdata(
                        owner.clone(),
                        600,
                        srv(20, 0, 5080, "b.test."),
                    ));
                    resp.add_answer(Record::from_rdata(
                        owner.clone(),
                        900,
                        srv(10, 60, 5060, "a.test."),
                    ));
                    resp.add_answer(Record::from_rdata(owner, 900, srv(10, 40, 5062, "c.test.")));
                }
                _ => resp.metadata.response_code = ResponseCode::NXDomain,
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), from);
        }
    });
    (addr, t)
}

enum Msg {
    Resolve(DnsQuery, mpsc::Sender<Result<DnsRequestId, DnsError>>),
}

struct DnsHandler {
    out: mpsc::Sender<(
        DnsRequestId,
        Result<DnsAnswer, DnsError>,
        std::thread::ThreadId,
    )>,
}

impl SipHandler for DnsHandler {
    type Message = Msg;
    fn on_datagram(&mut self, _: Instant, _: ListenerId, _: SocketAddr, _: &[u8], _: &mut Io<'_>) {}
    fn on_stream_data(
        &mut self,
        _: Instant,
        _: ConnId,
        _: SocketAddr,
        _: &mut StreamBuf,
        _: &mut Io<'_>,
    ) {
    }
    fn on_conn_event(
        &mut self,
        _: Instant,
        _: ConnId,
        _: SocketAddr,
        _: ConnEvent,
        _: &mut Io<'_>,
    ) {
    }
    fn on_timer(&mut self, _: Instant, _: TimerToken, _: u64, _: &mut Io<'_>) {}
    fn on_dns(
        &mut self,
        _now: Instant,
        req: DnsRequestId,
        r: Result<DnsAnswer, DnsError>,
        _io: &mut Io<'_>,
    ) {
        let _ = self.out.send((req, r, std::thread::current().id()));
    }
    fn on_message(&mut self, _now: Instant, msg: Msg, io: &mut Io<'_>) {
        let Msg::Resolve(q, tx) = msg;
        let _ = tx.send(io.resolve(q));
    }
}

#[test]
fn helper_resolves_a_aaaa_srv_and_reports_nxdomain_and_timeout() {
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, server) = dns_server(stop.clone());
    let mut sig = SigLoop::<Msg>::new(SigConfig::default()).unwrap();
    sig.with_dns(DnsConfig {
        nameservers: vec![ns],
        timeout: Duration::from_millis(200),
        attempts: 1,
        overall_timeout: Duration::from_millis(1500),
    })
    .unwrap();
    let handle = sig.handle();
    let (tx, rx) = mpsc::channel();
    let loop_thread = std::thread::spawn(move || {
        let id = std::thread::current().id();
        (sig.run(DnsHandler { out: tx }), id)
    });

    let resolve = |q: DnsQuery| {
        let (t, r) = mpsc::channel();
        handle.send(Msg::Resolve(q, t));
        r.recv_timeout(WAIT).unwrap().expect("query submitted")
    };
    let queries = [
        DnsQuery::A("sip.test.".into()),
        DnsQuery::Aaaa("sip.test.".into()),
        DnsQuery::sip_srv("test.", Transport::Udp),
        DnsQuery::A("nope.test.".into()),
        DnsQuery::A("slow.test.".into()),
    ];
    let ids: Vec<DnsRequestId> = queries.iter().cloned().map(resolve).collect();
    let mut results = std::collections::HashMap::new();
    let mut threads = std::collections::HashSet::new();
    let deadline = Instant::now() + WAIT;
    while results.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (id, r, th) = rx.recv_timeout(left).expect("all completions in time");
        threads.insert(th);
        results.insert(id, r);
    }
    assert_eq!(
        results[&ids[0]],
        Ok(DnsAnswer::Ips {
            addrs: vec![IpAddr::from([192, 0, 2, 10]), IpAddr::from([192, 0, 2, 11])],
            ttl: 60
        })
    );
    assert_eq!(
        results[&ids[1]],
        Ok(DnsAnswer::Ips {
            addrs: vec!["2001:db8::1".parse().unwrap()],
            ttl: 120
        })
    );
    let srv = |priority, weight, port, target: &str| SrvRecord {
        priority,
        weight,
        port,
        target: target.into(),
    };
    assert_eq!(
        results[&ids[2]],
        Ok(DnsAnswer::Srv {
            records: vec![
                srv(10, 60, 5060, "a.test."),
                srv(10, 40, 5062, "c.test."),
                srv(20, 0, 5080, "b.test.")
            ],
            ttl: 600
        })
    );
    assert_eq!(results[&ids[3]], Err(DnsError::NxDomain));
    assert_eq!(results[&ids[4]], Err(DnsError::Timeout));

    handle.stop();
    let (res, loop_id) = loop_thread.join().unwrap();
    let (_, counters) = res.unwrap();
    assert_eq!(threads.len(), 1);
    assert!(
        threads.contains(&loop_id),
        "completions must be delivered on the loop thread"
    );
    assert_eq!(counters.dns_queries, 5);
    assert_eq!(counters.dns_completions, 5);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn resolve_without_dns_config_is_a_typed_error() {
    let sig = SigLoop::<Msg>::new(SigConfig::default()).unwrap();
    let handle = sig.handle();
    let (tx, _rx) = mpsc::channel();
    let t = std::thread::spawn(move || sig.run(DnsHandler { out: tx }));
    let (q, r) = mpsc::channel();
    handle.send(Msg::Resolve(DnsQuery::A("x.test.".into()), q));
    assert_eq!(r.recv_timeout(WAIT).unwrap(), Err(DnsError::NotConfigured));
    handle.stop();
    t.join().unwrap().unwrap();
}
