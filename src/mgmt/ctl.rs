//! The control socket behind `tollgate ctl`: one JSON request per line in, one JSON reply per line out, over a
//! Unix stream socket (mode 0660, so access is by group membership). The B2BUA side implements
//! [`ControlHandler`]; this module owns the protocol, the server thread, the client and the human tables.
use super::snapshot::CallInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum CtlRequest {
    Calls,
    ShowCall {
        id: String,
    },
    Trunks,
    Flows,
    Stats,
    Reload,
    /// Stop taking calls; `timeout_s` overrides the configured drain time.
    Drain {
        timeout_s: Option<u32>,
    },
    BanList,
    BanDel {
        addr: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub uri: String,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrunkInfo {
    pub name: String,
    pub active_calls: u32,
    pub max_calls: Option<u32>,
    pub calls_total: u64,
    /// Calls per second over the last interval.
    pub cps: f64,
    /// Answer-seizure ratio in percent.
    pub asr: f64,
    pub targets: Vec<TargetInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowInfo {
    pub worker: u32,
    /// The flow key: the SBC's media address the packets arrive at.
    pub local: String,
    /// Where packets are sent (other leg's remote).
    pub forward_to: String,
    pub latched: Option<String>,
    pub srtp: String,
    pub packets: u64,
    pub bytes: u64,
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BanInfo {
    pub addr: String,
    pub reason: String,
    pub expires_in_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum CtlReply {
    Calls(Vec<CallInfo>),
    Call(Box<CallInfo>),
    Trunks(Vec<TrunkInfo>),
    Flows(Vec<FlowInfo>),
    Stats(BTreeMap<String, f64>),
    /// Reload accepted: a line per change the new config makes.
    Reloaded(Vec<String>),
    Draining {
        active_calls: usize,
        timeout_s: u32,
    },
    Bans(Vec<BanInfo>),
    Ok(String),
    Error(String),
}

/// Implemented by the integrator over the B2BUA (typically by sending the request to the signaling thread and
/// waiting for its answer). Called on the control thread, one request at a time.
pub trait ControlHandler: Send + Sync + 'static {
    fn calls(&self) -> Vec<CallInfo>;
    fn call(&self, id: &str) -> Option<CallInfo>;
    fn trunks(&self) -> Vec<TrunkInfo>;
    fn flows(&self) -> Vec<FlowInfo>;
    fn stats(&self) -> BTreeMap<String, f64>;
    /// Re-reads the config; `Err` carries every reason the new file was refused (the running config stays).
    fn reload(&self) -> Result<Vec<String>, Vec<String>>;
    /// Starts draining; returns the number of calls still up and the drain timeout in force.
    fn drain(&self, timeout_s: Option<u32>) -> Result<(usize, u32), String>;
    fn bans(&self) -> Vec<BanInfo>;
    fn unban(&self, addr: &str) -> Result<(), String>;
}

/// Runs one request against a handler. Also usable from a signaling-loop control socket if the integrator
/// serves the socket on the io_uring ring instead of with [`CtlServer`].
pub fn dispatch(h: &dyn ControlHandler, req: &CtlRequest) -> CtlReply {
    match req {
        CtlRequest::Calls => CtlReply::Calls(h.calls()),
        CtlRequest::ShowCall { id } => match h.call(id) {
            Some(c) => CtlReply::Call(Box::new(c)),
            None => CtlReply::Error(format!("no call {id}")),
        },
        CtlRequest::Trunks => CtlReply::Trunks(h.trunks()),
        CtlRequest::Flows => CtlReply::Flows(h.flows()),
        CtlRequest::Stats => CtlReply::Stats(h.stats()),
        CtlRequest::Reload => match h.reload() {
            Ok(changes) => CtlReply::Reloaded(changes),
            Err(errs) => CtlReply::Error(format!(
                "config refused, running config kept:\n{}",
                errs.join("\n")
            )),
        },
        CtlRequest::Drain { timeout_s } => match h.drain(*timeout_s) {
            Ok((active_calls, timeout_s)) => CtlReply::Draining {
                active_calls,
                timeout_s,
            },
            Err(e) => CtlReply::Error(e),
        },
        CtlRequest::BanList => CtlReply::Bans(h.bans()),
        CtlRequest::BanDel { addr } => match h.unban(addr) {
            Ok(()) => CtlReply::Ok(format!("{addr} unbanned")),
            Err(e) => CtlReply::Error(e),
        },
    }
}

/// Parses one request line and answers it; malformed input gets an `Error` reply, never a panic.
pub fn handle_line(h: &dyn ControlHandler, line: &str) -> CtlReply {
    answer_line(&|req| dispatch(h, req), line)
}

fn answer_line(answer: &dyn Fn(&CtlRequest) -> CtlReply, line: &str) -> CtlReply {
    match serde_json::from_str::<CtlRequest>(line) {
        Ok(req) => answer(&req),
        Err(e) => CtlReply::Error(format!("bad request: {e}")),
    }
}

/// Answers whole requests; what the daemon hands [`CtlServer::spawn_answering`].
pub type Answer = Arc<dyn Fn(&CtlRequest) -> CtlReply + Send + Sync>;

const MAX_LINE: u64 = 64 * 1024;

fn serve_conn(answer: &dyn Fn(&CtlRequest) -> CtlReply, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        let n = (&mut r).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            CtlReply::Error("request too long".into())
        } else {
            answer_line(answer, line.trim_end())
        };
        let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
        out.push(b'\n');
        w.write_all(&out)?;
        if matches!(reply, CtlReply::Error(ref e) if e == "request too long") {
            return Ok(());
        }
    }
}

/// The control-socket thread. Dropping it stops the thread and removes the socket file.
pub struct CtlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CtlServer {
    /// Binds `path` (replacing a stale socket file left by a previous run) and serves connections one at a time.
    pub fn spawn(path: &Path, handler: Arc<dyn ControlHandler>) -> io::Result<Self> {
        Self::spawn_answering(path, Arc::new(move |req| dispatch(&*handler, req)))
    }

    /// As [`CtlServer::spawn`] with a function that answers whole requests (the daemon passes each one to
    /// the signaling thread, which owns the calls, and relays its reply).
    pub fn spawn_answering(path: &Path, answer: Answer) -> io::Result<Self> {
        if path.exists() {
            // A live daemon on that socket answers a connect; only then is the path really in use.
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mgmt-ctl".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            // One short-lived thread per connection: an idle client cannot hold the socket for
                            // others, and ctl connections are rare.
                            let a = answer.clone();
                            let spawned = std::thread::Builder::new()
                                .name("mgmt-ctl-conn".into())
                                .spawn(move || {
                                    if let Err(e) = serve_conn(&*a, s) {
                                        tracing::debug!(error = %e, "control connection");
                                    }
                                });
                            if let Err(e) = spawned {
                                tracing::warn!(error = %e, "control connection thread");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "control accept"),
                    }
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Client side: sends one request and reads its reply.
pub fn request(path: &Path, req: &CtlRequest) -> io::Result<CtlReply> {
    let s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot reach tollgate at {}: {e}", path.display()),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    (&s).write_all(&line)?;
    let mut r = BufReader::new(&s).take(64 * 1024 * 1024);
    let mut reply = String::new();
    r.read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}")))
}

/// Left-aligned text table with a header row; column widths from the widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(l, "{c:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

fn dur(start_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(start_ms) / 1000;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The human rendering of a reply (`now_ms` for durations).
pub fn render_human(reply: &CtlReply, now_ms: u64) -> String {
    match reply {
        CtlReply::Calls(calls) => {
            let rows: Vec<Vec<String>> = calls
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.state.clone(),
                        dur(c.start_ms, now_ms),
                        format!(
                            "{} -> {}",
                            c.inbound_trunk,
                            c.outbound_trunk.as_deref().unwrap_or("-")
                        ),
                        c.from_out.clone(),
                        c.to_out.clone(),
                        c.legs
                            .iter()
                            .filter_map(|l| l.codec.as_deref())
                            .collect::<Vec<_>>()
                            .join("/"),
                        c.srtp_summary(),
                    ]
                })
                .collect();
            let mut s = table(
                &[
                    "CALL", "STATE", "DURATION", "TRUNKS", "FROM", "TO", "CODECS", "SRTP",
                ],
                &rows,
            );
            let _ = writeln!(s, "{} calls", calls.len());
            s
        }
        CtlReply::Call(c) => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "call {}  state {}  duration {}",
                c.id,
                c.state,
                dur(c.start_ms, now_ms)
            );
            let _ = writeln!(
                s,
                "from {} -> {}   to {} -> {}",
                c.from_in, c.from_out, c.to_in, c.to_out
            );
            let _ = writeln!(
                s,
                "trunks {} -> {}",
                c.inbound_trunk,
                c.outbound_trunk.as_deref().unwrap_or("-")
            );
            let mut rows = Vec::new();
            for l in &c.legs {
                for st in &l.streams {
                    rows.push(vec![
                        l.side.clone(),
                        l.sip_call_id.clone(),
                        l.codec.clone().unwrap_or_default(),
                        l.srtp.clone().unwrap_or_else(|| "rtp".into()),
                        format!("{} <-> {}", st.local, st.remote),
                        st.packets_in.to_string(),
                        st.packets_out.to_string(),
                        st.lost.to_string(),
                        format!("{:.1}", st.jitter_ms),
                    ]);
                }
                if l.streams.is_empty() {
                    let srtp = l.srtp.clone().unwrap_or_else(|| "rtp".into());
                    let codec = l.codec.clone().unwrap_or_default();
                    rows.push(vec![
                        l.side.clone(),
                        l.sip_call_id.clone(),
                        codec,
                        srtp,
                        l.remote.clone(),
                    ]);
                }
            }
            s.push_str(&table(
                &[
                    "LEG",
                    "SIP CALL-ID",
                    "CODEC",
                    "SRTP",
                    "MEDIA",
                    "PKTS IN",
                    "PKTS OUT",
                    "LOST",
                    "JITTER MS",
                ],
                &rows,
            ));
            s
        }
        CtlReply::Trunks(ts) => {
            let rows: Vec<Vec<String>> = ts
                .iter()
                .map(|t| {
                    let up = t.targets.iter().filter(|x| x.up).count();
                    vec![
                        t.name.clone(),
                        match t.max_calls {
                            Some(m) => format!("{}/{m}", t.active_calls),
                            None => t.active_calls.to_string(),
                        },
                        t.calls_total.to_string(),
                        format!("{:.1}", t.cps),
                        format!("{:.1}%", t.asr),
                        format!("{up}/{} up", t.targets.len()),
                    ]
                })
                .collect();
            table(
                &["TRUNK", "ACTIVE", "TOTAL", "CPS", "ASR", "TARGETS"],
                &rows,
            )
        }
        CtlReply::Flows(fs) => {
            let rows: Vec<Vec<String>> = fs
                .iter()
                .map(|f| {
                    vec![
                        f.worker.to_string(),
                        f.local.clone(),
                        f.latched.clone().unwrap_or_else(|| "-".into()),
                        f.forward_to.clone(),
                        f.srtp.clone(),
                        f.packets.to_string(),
                        f.bytes.to_string(),
                        f.call_id.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(
                &[
                    "WORKER",
                    "LOCAL",
                    "LATCHED",
                    "FORWARD TO",
                    "SRTP",
                    "PACKETS",
                    "BYTES",
                    "CALL",
                ],
                &rows,
            )
        }
        CtlReply::Stats(m) => {
            let rows: Vec<Vec<String>> = m
                .iter()
                .map(|(k, v)| vec![k.clone(), format!("{v}")])
                .collect();
            table(&["STAT", "VALUE"], &rows)
        }
        CtlReply::Reloaded(ch) if ch.is_empty() => "reloaded: no changes\n".into(),
        CtlReply::Reloaded(ch) => format!("reloaded:\n  {}\n", ch.join("\n  ")),
        CtlReply::Draining {
            active_calls,
            timeout_s,
        } => {
            format!(
                "draining: {active_calls} calls up, new calls refused, remaining calls ended after {timeout_s}s\n"
            )
        }
        CtlReply::Bans(bs) => {
            let rows: Vec<Vec<String>> = bs
                .iter()
                .map(|b| {
                    vec![
                        b.addr.clone(),
                        b.reason.clone(),
                        format!("{}s", b.expires_in_s),
                    ]
                })
                .collect();
            table(&["ADDRESS", "REASON", "EXPIRES IN"], &rows)
        }
        CtlReply::Ok(m) => format!("{m}\n"),
        CtlReply::Error(e) => format!("error: {e}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::snapshot::tests::sample_call;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        bans: Mutex<Vec<BanInfo>>,
        reload_ok: AtomicBool,
        log: Mutex<Vec<String>>,
    }

    impl ControlHandler for Fake {
        fn calls(&self) -> Vec<CallInfo> {
            vec![sample_call("c1"), sample_call("c2")]
        }
        fn call(&self, id: &str) -> Option<CallInfo> {
            (id == "c1").then(|| sample_call("c1"))
        }
        fn trunks(&self) -> Vec<TrunkInfo> {
            vec![TrunkInfo {
                name: "carrier".into(),
                active_calls: 2,
                max_calls: Some(100),
                calls_total: 17,
                cps: 0.5,
                asr: 64.7,
                targets: vec![
                    TargetInfo {
                        uri: "sip:10.0.0.1".into(),
                        up: true,
                    },
                    TargetInfo {
                        uri: "sip:10.0.0.2".into(),
                        up: false,
                    },
                ],
            }]
        }
        fn flows(&self) -> Vec<FlowInfo> {
            vec![FlowInfo {
                worker: 1,
                local: "198.51.100.1:20000".into(),
                forward_to: "203.0.113.5:40000".into(),
                latched: Some("192.0.2.10:30000".into()),
                srtp: "protect".into(),
                packets: 9,
                bytes: 1548,
                call_id: Some("c1".into()),
            }]
        }
        fn stats(&self) -> BTreeMap<String, f64> {
            BTreeMap::from([
                ("calls_active".into(), 2.0),
                ("media_drops_no_flow".into(), 3.0),
            ])
        }
        fn reload(&self) -> Result<Vec<String>, Vec<String>> {
            self.log.lock().unwrap().push("reload".into());
            if self.reload_ok.load(Ordering::Relaxed) {
                Ok(vec!["trunk cloud: targets changed".into()])
            } else {
                Err(vec!["tollgate.toml:3:1: unknown key `bogus`".into()])
            }
        }
        fn drain(&self, timeout_s: Option<u32>) -> Result<(usize, u32), String> {
            self.log
                .lock()
                .unwrap()
                .push(format!("drain {timeout_s:?}"));
            Ok((2, timeout_s.unwrap_or(300)))
        }
        fn bans(&self) -> Vec<BanInfo> {
            self.bans.lock().unwrap().clone()
        }
        fn unban(&self, addr: &str) -> Result<(), String> {
            let mut b = self.bans.lock().unwrap();
            let n = b.len();
            b.retain(|x| x.addr != addr);
            if b.len() == n {
                Err(format!("{addr} is not banned"))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn every_command_round_trips_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let fake = Arc::new(Fake::default());
        fake.bans.lock().unwrap().push(BanInfo {
            addr: "192.0.2.66".into(),
            reason: "scanner UA friendly-scanner".into(),
            expires_in_s: 3600,
        });
        let srv = CtlServer::spawn(&path, fake.clone()).unwrap();
        assert!(
            CtlServer::spawn(&path, fake.clone()).is_err(),
            "a live socket is not stolen"
        );

        let CtlReply::Calls(c) = request(&path, &CtlRequest::Calls).unwrap() else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        let CtlReply::Call(c) = request(&path, &CtlRequest::ShowCall { id: "c1".into() }).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.legs[1].srtp.as_deref(), Some("AES_CM_128_HMAC_SHA1_80"));
        assert_eq!(
            request(&path, &CtlRequest::ShowCall { id: "zz".into() }).unwrap(),
            CtlReply::Error("no call zz".into())
        );
        let CtlReply::Trunks(t) = request(&path, &CtlRequest::Trunks).unwrap() else {
            panic!()
        };
        assert_eq!(t[0].calls_total, 17);
        let CtlReply::Flows(f) = request(&path, &CtlRequest::Flows).unwrap() else {
            panic!()
        };
        assert_eq!(f[0].bytes, 1548);
        let CtlReply::Stats(s) = request(&path, &CtlRequest::Stats).unwrap() else {
            panic!()
        };
        assert_eq!(s["media_drops_no_flow"], 3.0);
        let CtlReply::Error(e) = request(&path, &CtlRequest::Reload).unwrap() else {
            panic!()
        };
        assert!(e.contains("tollgate.toml:3:1"), "{e}");
        fake.reload_ok.store(true, Ordering::Relaxed);
        assert_eq!(
            request(&path, &CtlRequest::Reload).unwrap(),
            CtlReply::Reloaded(vec!["trunk cloud: targets changed".into()])
        );
        assert_eq!(
            request(
                &path,
                &CtlRequest::Drain {
                    timeout_s: Some(60)
                }
            )
            .unwrap(),
            CtlReply::Draining {
                active_calls: 2,
                timeout_s: 60
            }
        );
        let CtlReply::Bans(b) = request(&path, &CtlRequest::BanList).unwrap() else {
            panic!()
        };
        assert_eq!(b.len(), 1);
        assert!(matches!(
            request(
                &path,
                &CtlRequest::BanDel {
                    addr: "192.0.2.66".into()
                }
            )
            .unwrap(),
            CtlReply::Ok(_)
        ));
        assert!(matches!(
            request(
                &path,
                &CtlRequest::BanDel {
                    addr: "192.0.2.66".into()
                }
            )
            .unwrap(),
            CtlReply::Error(_)
        ));
        assert_eq!(
            *fake.log.lock().unwrap(),
            vec!["reload", "reload", "drain Some(60)"]
        );

        // Garbage and several requests on one connection.
        let s = UnixStream::connect(&path).unwrap();
        (&s).write_all(b"{not json\n{\"cmd\":\"stats\"}\n").unwrap();
        let mut r = BufReader::new(&s);
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(
            matches!(serde_json::from_str::<CtlReply>(&l).unwrap(), CtlReply::Error(e) if e.starts_with("bad request"))
        );
        l.clear();
        r.read_line(&mut l).unwrap();
        assert!(matches!(
            serde_json::from_str::<CtlReply>(&l).unwrap(),
            CtlReply::Stats(_)
        ));
        drop(srv);
        assert!(!path.exists(), "socket file removed on shutdown");
    }

    #[test]
    fn wire_format_is_tagged_json() {
        assert_eq!(
            serde_json::to_string(&CtlRequest::ShowCall { id: "x".into() }).unwrap(),
            r#"{"cmd":"show_call","id":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&CtlRequest::BanList).unwrap(),
            r#"{"cmd":"ban_list"}"#
        );
        assert_eq!(
            serde_json::to_string(&CtlReply::Ok("y".into())).unwrap(),
            r#"{"type":"ok","data":"y"}"#
        );
    }

    #[test]
    fn human_tables() {
        let f = Fake::default();
        let now = 1_700_000_065_000;
        let calls = render_human(&CtlReply::Calls(f.calls()), now);
        let lines: Vec<&str> = calls.lines().collect();
        assert!(
            lines[0].starts_with("CALL  STATE     DURATION  TRUNKS"),
            "{calls}"
        );
        assert!(
            lines[1].contains("c1    answered  0:01:05   carrier -> cloud  +15551234567"),
            "{calls}"
        );
        assert!(
            lines[1].ends_with("PCMU/PCMU  rtp/AES_CM_128_HMAC_SHA1_80"),
            "{calls}"
        );
        assert_eq!(lines[3], "2 calls");
        let t = render_human(&CtlReply::Trunks(f.trunks()), now);
        assert!(
            t.contains("carrier  2/100   17     0.5  64.7%  1/2 up"),
            "{t}"
        );
        let call = render_human(&CtlReply::Call(Box::new(sample_call("c1"))), now);
        assert!(call.contains("from 5551234567 -> +15551234567"), "{call}");
        assert!(
            call.contains("198.51.100.1:20000 <-> 192.0.2.10:30000  1500"),
            "{call}"
        );
        assert_eq!(
            render_human(&CtlReply::Error("x".into()), now),
            "error: x\n"
        );
    }
}
