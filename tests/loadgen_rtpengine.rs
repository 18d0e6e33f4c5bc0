//! The generator through rtpengine (userspace forwarding), set up over the ng protocol: 10 calls of plain RTP
//! and 10 calls of SRTP<->RTP bridging, every packet back at the sink, then the calls deleted and rtpengine
//! stopped. Skipped with a message when `rtpengine` is not installed.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::loadgen::generator::{GenConfig, Pace};
use tollgate::loadgen::ng::{self, NgClient};
use tollgate::loadgen::run::{SinkOn, open_streams, run};
use tollgate::loadgen::sink::SinkConfig;
use tollgate::loadgen::spec::SSRC_BASE;
use tollgate::loadgen::wire;

struct Rtpengine {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rtpengine_path() -> Option<std::path::PathBuf> {
    [
        "/usr/bin/rtpengine",
        "/usr/sbin/rtpengine",
        "/usr/local/bin/rtpengine",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

fn start(bin: &std::path::Path, ng_port: u16, port_min: u16) -> Rtpengine {
    let dir = std::env::temp_dir().join(format!("tgload-rtpe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("rtpengine.conf");
    std::fs::write(
        &conf,
        format!(
            "[rtpengine]\ntable = -1\ninterface = 127.0.0.1\nlisten-ng = 127.0.0.1:{ng_port}\nforeground = true\n\
             log-stderr = true\nlog-level = 4\nport-min = {port_min}\nport-max = {}\ntimeout = 60\ndelete-delay = 0\n\
             num-threads = 2\n",
            port_min + 399
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg(format!("--config-file={}", conf.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("rtpengine.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    Rtpengine { child, dir }
}

/// A block of `n` free even-aligned loopback UDP ports (probed by binding them).
fn free_block(n: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..50u16 {
        let base = 21000 + ((seed.wrapping_add(attempt * 37)) % 200) * 40;
        let ok = (0..n).all(|i| UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free port block");
}

#[test]
fn calls_through_rtpengine() {
    let Some(bin) = rtpengine_path() else {
        eprintln!(
            "SKIP calls_through_rtpengine: rtpengine not installed (apt-get install rtpengine-daemon)"
        );
        return;
    };
    let ng_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_min = 50000 + (std::process::id() % 30) as u16 * 400;
    let rtpe = start(&bin, ng_port, port_min);
    let mut client =
        NgClient::connect(([127, 0, 0, 1], ng_port).into(), Duration::from_millis(200)).unwrap();
    let t0 = Instant::now();
    while client.ping().is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "rtpengine did not answer ping; log in {:?}",
            rtpe.dir
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for srtp in [false, true] {
        let calls = 10;
        let base = free_block(calls as u16 * 4);
        let prefix = if srtp { "tgls" } else { "tglp" };
        let specs = ng::setup_calls(&mut client, calls, prefix, base, srtp).unwrap();
        assert_eq!(specs.len(), 2 * calls);
        assert_eq!(specs[0].tx_key.is_some(), srtp);
        assert_eq!(specs[0].rx_key.is_some(), srtp);
        let socks = open_streams(&specs, false).unwrap();
        let g = GenConfig {
            pace: Pace::Paced {
                pps_per_stream: 50,
                jitter_us: 0,
            },
            duration: Duration::from_millis(1000),
            payload_len: wire::G711_PAYLOAD,
            ssrc_base: SSRC_BASE,
            core: None,
        };
        let k = SinkConfig {
            streams: specs.len(),
            ssrc_base: SSRC_BASE,
            max_duration: Duration::from_secs(10),
            core: None,
            count_only: false,
        };
        let r = run(
            &specs,
            &socks,
            &g,
            &k,
            SinkOn::StreamSockets,
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(r.generator.sent >= 900, "sent {}", r.generator.sent);
        assert_eq!(
            r.sink.auth_failures + r.sink.srtp_errors + r.sink.bad_payload + r.sink.unknown,
            0,
            "{:?}",
            r.sink
        );
        assert_eq!(
            r.sink.received, r.generator.sent,
            "srtp={srtp}: {:?}",
            r.sink
        );
        for (i, st) in r.sink.per_stream.iter().enumerate() {
            assert_eq!(
                st.received, r.generator.sent_per_stream[i],
                "stream {i} ({})",
                specs[i].label
            );
        }
        assert!(r.sink.latency.is_some());
        drop(socks);
        assert_eq!(ng::delete_calls(&mut client, calls, prefix), 0);
    }
    drop(rtpe);
}
