//! One measurement: open the stream sockets, run the sink on them (or on separate listening sockets) and the
//! generator, each on its own thread and core, and put the two reports together.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::generator::{GenConfig, GenReport, run_gen};
use super::sink::{SinkConfig, SinkReport, run_sink_signalled, set_rcvbuf};
use super::spec::StreamSpec;
use super::transform::{PacketTransform, for_key};

/// Receive buffer for count-only sockets: as small as the kernel allows, so arrivals become drops.
pub const COUNT_ONLY_RCVBUF: usize = 1;
/// Receive buffer for reading sockets.
pub const READ_RCVBUF: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("socket {addr}: {err}")]
    Socket {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("SRTP key: {0}")]
    Srtp(#[from] crate::srtp::SrtpError),
}

/// Binds `bind`, connects to `dest` when given.
pub fn open_socket(
    bind: SocketAddr,
    dest: Option<SocketAddr>,
    rcvbuf: usize,
) -> Result<UdpSocket, RunError> {
    let wrap = |err| RunError::Socket { addr: bind, err };
    let s = UdpSocket::bind(bind).map_err(wrap)?;
    if let Some(d) = dest {
        s.connect(d).map_err(wrap)?;
    }
    set_rcvbuf(&s, rcvbuf).map_err(wrap)?;
    Ok(s)
}

/// The sockets of `specs`: bound, connected to their destinations.
pub fn open_streams(specs: &[StreamSpec], count_only: bool) -> Result<Vec<UdpSocket>, RunError> {
    let rcv = if count_only {
        COUNT_ONLY_RCVBUF
    } else {
        READ_RCVBUF
    };
    specs
        .iter()
        .map(|s| open_socket(s.bind, Some(s.dest), rcv))
        .collect()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub generator: GenReport,
    pub sink: SinkReport,
    /// 1 - received / sent.
    pub loss: f64,
}

/// Where the sink listens.
pub enum SinkOn<'a> {
    /// The streams' own sockets (symmetric RTP through a relay: what goes out of leg A comes back on leg B).
    StreamSockets,
    /// Separate sockets (e.g. the generator sends straight to them, or to a relay that sends elsewhere).
    Sockets(&'a [UdpSocket], Vec<Box<dyn PacketTransform>>),
    /// No sink (someone else counts).
    None,
}

/// Runs the generator over `specs` for `gen.duration`, the sink until `grace` after the generator stops.
pub fn run(
    specs: &[StreamSpec],
    socks: &[UdpSocket],
    gen_cfg: &GenConfig,
    sink: &SinkConfig,
    sink_on: SinkOn<'_>,
    grace: Duration,
) -> Result<RunReport, RunError> {
    let mut txs = specs
        .iter()
        .map(|s| for_key(s.tx_key.as_ref(), 2))
        .collect::<Result<Vec<_>, _>>()?;
    let stop_gen = AtomicBool::new(false);
    let stop_sink = AtomicBool::new(false);
    let sink_ready = AtomicBool::new(false);
    let (sink_socks, mut rxs): (&[UdpSocket], Vec<Box<dyn PacketTransform>>) = match sink_on {
        SinkOn::StreamSockets => (
            socks,
            specs
                .iter()
                .map(|s| for_key(s.rx_key.as_ref(), sink.streams.max(2)))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        SinkOn::Sockets(s, r) => (s, r),
        SinkOn::None => (&[], Vec::new()),
    };
    let (g, k) = std::thread::scope(|sc| {
        let sink_thread =
            sc.spawn(|| run_sink_signalled(sink_socks, &mut rxs, sink, &stop_sink, &sink_ready));
        // Bounded: a sink that never gets ready (it panicked) is reported by join below.
        let wait_until = Instant::now() + Duration::from_secs(5);
        while !sink_ready.load(Ordering::Acquire)
            && !sink_thread.is_finished()
            && Instant::now() < wait_until
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let g = run_gen(socks, &mut txs, gen_cfg, &stop_gen);
        std::thread::sleep(grace);
        stop_sink.store(true, Ordering::Relaxed);
        let k = sink_thread.join();
        (g, k)
    });
    let k = k.map_err(|_| RunError::Socket {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        err: std::io::Error::other("sink thread panicked"),
    })?;
    let loss = if g.sent == 0 {
        0.0
    } else {
        1.0 - (k.received.min(g.sent) as f64 / g.sent as f64)
    };
    Ok(RunReport {
        generator: g,
        sink: k,
        loss,
    })
}
