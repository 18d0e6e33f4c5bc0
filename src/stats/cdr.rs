//! Call detail records, one JSON object per line, and the MOS estimate that goes into them.
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// One finished call. Times are Unix epoch milliseconds (UTC) so that a CDR line sorts and joins without a
/// time-zone question; `answered_ms` is `None` for a call that never connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub node: String,
    pub start_ms: u64,
    pub answered_ms: Option<u64>,
    pub end_ms: u64,
    pub inbound_trunk: String,
    pub outbound_trunk: Option<String>,
    /// Caller and callee as received on the inbound leg.
    pub from_in: String,
    pub to_in: String,
    /// Caller and callee after number translation, as sent on the outbound leg.
    pub from_out: String,
    pub to_out: String,
    /// Final SIP status of the call (200 for an answered call, the failure code otherwise).
    pub result_code: u16,
    /// Who ended it or why: "caller", "callee", "timeout", "drain", "error: ...".
    pub end_reason: String,
    pub streams: Vec<StreamStats>,
}

impl CallRecord {
    /// Seconds from answer to end, 0 for an unanswered call.
    pub fn billsec(&self) -> u64 {
        self.answered_ms
            .map_or(0, |a| self.end_ms.saturating_sub(a) / 1000)
    }
}

/// Media statistics of one direction of one stream, as the worker that relayed it counted them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    /// "carrier->cloud" style label of the direction.
    pub direction: String,
    pub codec: String,
    pub srtp: bool,
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    /// RFC 3550 interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// Round-trip time from RTCP when known, in milliseconds.
    pub rtt_ms: Option<f64>,
    pub mos: f64,
}

impl StreamStats {
    /// Loss as a percentage of the packets expected (received + lost).
    pub fn loss_pct(&self) -> f64 {
        let expected = self.packets + self.lost;
        if expected == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / expected as f64
        }
    }
}

/// Codec impairment for the E-model: equipment impairment `ie` and packet-loss robustness `bpl`
/// (ITU-T G.113 Appendix I values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    pub ie: f64,
    pub bpl: f64,
}

impl CodecImpairment {
    /// G.711 with packet-loss concealment (G.113 App. I: Ie 0, Bpl 25.1).
    pub const G711: Self = Self { ie: 0.0, bpl: 25.1 };
    /// G.729A with VAD (Ie 11, Bpl 19).
    pub const G729: Self = Self {
        ie: 11.0,
        bpl: 19.0,
    };
    /// G.722 (Ie 0 in narrowband terms is optimistic; 13 per G.113 Amd for wideband-to-narrowband comparison is
    /// too strict for a relay): treated like G.711.
    pub const G722: Self = Self::G711;
    /// Opus at VoIP rates: robust to loss thanks to FEC/PLC, Ie ~ 0 (no ITU value; chosen like G.711 with a
    /// higher Bpl).
    pub const OPUS: Self = Self { ie: 0.0, bpl: 30.0 };

    pub fn for_codec(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "g729" => Self::G729,
            "g722" => Self::G722,
            "opus" => Self::OPUS,
            _ => Self::G711,
        }
    }
}

/// MOS-CQE estimate from loss, jitter and one-way delay, by the ITU-T G.107 E-model with its defaults for
/// everything a relay cannot observe (room noise, sidetone, echo, advantage factor A = 0):
///
/// - the jitter buffer is assumed to add twice the interarrival jitter, so the mouth-to-ear delay is
///   `Ta = one_way_delay + 2 * jitter + 10 ms` (packetization);
/// - delay impairment `Id = 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3)` (the common simplification of Idd);
/// - effective equipment impairment with random loss (BurstR = 1):
///   `Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl)`;
/// - `R = 93.2 - Id - Ie_eff`, clamped to 0..=100, and `MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)`.
///
/// A clean G.711 call with no delay scores 4.41, the E-model's ceiling for narrowband.
pub fn mos_estimate(
    loss_pct: f64,
    jitter_ms: f64,
    one_way_delay_ms: f64,
    codec: CodecImpairment,
) -> f64 {
    let ppl = loss_pct.clamp(0.0, 100.0);
    let ta = one_way_delay_ms.max(0.0) + 2.0 * jitter_ms.max(0.0) + 10.0;
    let id = 0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 };
    let ie_eff = codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl);
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    let mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r);
    mos.clamp(1.0, 4.5)
}

/// Writes one record per line to any sink (a file opened in append mode, a pipe to a collector).
pub struct CdrWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> CdrWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::with_capacity(1024),
        }
    }

    /// Serializes the record and writes it with one `write_all`, so that concurrent appenders to the same file
    /// (O_APPEND) never interleave halves of lines.
    pub fn write(&mut self, rec: &CallRecord) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, rec).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Opens (creating) a CDR file for appending.
pub fn open_cdr_file(path: &std::path::Path) -> io::Result<CdrWriter<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(CdrWriter::new(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(lost: u64, jitter: f64) -> StreamStats {
        let packets = 1000 - lost;
        StreamStats {
            direction: "carrier->cloud".into(),
            codec: "PCMU".into(),
            srtp: true,
            packets,
            bytes: packets * 172,
            lost,
            jitter_ms: jitter,
            rtt_ms: None,
            mos: mos_estimate(lost as f64 / 10.0, jitter, 20.0, CodecImpairment::G711),
        }
    }

    #[test]
    fn mos_reference_points() {
        // Perfect G.711: R = 93.2 - 0.24 = 92.96 -> MOS 4.41.
        let m = mos_estimate(0.0, 0.0, 0.0, CodecImpairment::G711);
        assert!((m - 4.41).abs() < 0.01, "{m}");
        // Monotone in loss and jitter.
        let m1 = mos_estimate(1.0, 10.0, 20.0, CodecImpairment::G711);
        let m5 = mos_estimate(5.0, 10.0, 20.0, CodecImpairment::G711);
        let m5j = mos_estimate(5.0, 100.0, 20.0, CodecImpairment::G711);
        assert!(m > m1 && m1 > m5 && m5 > m5j, "{m} {m1} {m5} {m5j}");
        // 1 % random loss on G.711 (Bpl 25.1): Ie_eff = 95/26.1 = 3.64; Ta = 20+20+10 = 50, Id = 1.2,
        // R = 88.36, MOS = 1 + 3.0926 + 7e-6*88.36*28.36*11.64 = 4.2968.
        assert!((m1 - 4.297).abs() < 0.005, "{m1}");
        // G.729 starts lower than G.711.
        assert!(mos_estimate(0.0, 0.0, 0.0, CodecImpairment::G729) < m);
        // Total loss floors at 1.
        assert_eq!(
            mos_estimate(100.0, 500.0, 500.0, CodecImpairment::G711),
            1.0
        );
    }

    #[test]
    fn cdr_lines_round_trip() {
        let rec = CallRecord {
            call_id: "a84b4c76e66710@pc33".into(),
            node: "sbc1".into(),
            start_ms: 1_700_000_000_000,
            answered_ms: Some(1_700_000_002_000),
            end_ms: 1_700_000_062_500,
            inbound_trunk: "carrier".into(),
            outbound_trunk: Some("cloud".into()),
            from_in: "5551234567".into(),
            to_in: "5559876543".into(),
            from_out: "+15551234567".into(),
            to_out: "+15559876543".into(),
            result_code: 200,
            end_reason: "caller".into(),
            streams: vec![stream(0, 1.0), stream(20, 30.0)],
        };
        let mut failed = rec.clone();
        failed.call_id = "x\"y\nz".into();
        failed.answered_ms = None;
        failed.result_code = 486;
        failed.streams.clear();
        let mut w = CdrWriter::new(Vec::new());
        w.write(&rec).unwrap();
        w.write(&failed).unwrap();
        let out = String::from_utf8(w.into_inner()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "a quote or newline in a field must not split a line"
        );
        let back: CallRecord = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.billsec(), 60);
        assert!((back.streams[1].loss_pct() - 2.0).abs() < 1e-9);
        assert!(back.streams[0].mos > back.streams[1].mos);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["result_code"], 486);
        assert_eq!(v["answered_ms"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_str::<CallRecord>(lines[1])
                .unwrap()
                .billsec(),
            0
        );
    }

    #[test]
    fn cdr_file_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cdr.jsonl");
        let rec = CallRecord {
            call_id: "c".into(),
            node: "n".into(),
            start_ms: 1,
            answered_ms: None,
            end_ms: 2,
            inbound_trunk: "t".into(),
            outbound_trunk: None,
            from_in: "1".into(),
            to_in: "2".into(),
            from_out: "1".into(),
            to_out: "2".into(),
            result_code: 404,
            end_reason: "callee".into(),
            streams: vec![],
        };
        open_cdr_file(&p).unwrap().write(&rec).unwrap();
        open_cdr_file(&p).unwrap().write(&rec).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
    }
}
