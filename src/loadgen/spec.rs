//! Which streams to run: one line per stream socket, written by `rtpengine-setup` (or by hand):
//! `<bind ip:port> <dest ip:port> <tx inline key|-> <rx inline key|-> [label]`.
//! The socket binds `bind`, sends to `dest` (protected with the tx key) and receives whatever comes back
//! to `bind` (unprotected with the rx key).

use std::net::SocketAddr;

use crate::srtp::MasterKey;

use super::transform::DEFAULT_SUITE;

/// First SSRC; stream `i` sends with SSRC `SSRC_BASE + i`, so the sink finds the stream from the header.
pub const SSRC_BASE: u32 = 0x7467_0000;

#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub bind: SocketAddr,
    pub dest: SocketAddr,
    pub tx_key: Option<MasterKey>,
    pub rx_key: Option<MasterKey>,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
}

fn key(s: &str, line: usize) -> Result<Option<MasterKey>, SpecError> {
    if s == "-" {
        return Ok(None);
    }
    MasterKey::from_sdes_inline(DEFAULT_SUITE, s)
        .map(Some)
        .map_err(|e| SpecError::Line {
            line,
            msg: format!("bad key: {e}"),
        })
}

/// Parses a streams file (blank lines and `#` comments ignored).
pub fn parse(text: &str) -> Result<Vec<StreamSpec>, SpecError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 {
            return Err(SpecError::Line {
                line,
                msg: "want: bind dest txkey|- rxkey|- [label]".into(),
            });
        }
        let addr = |s: &str| {
            s.parse::<SocketAddr>().map_err(|e| SpecError::Line {
                line,
                msg: format!("bad address {s:?}: {e}"),
            })
        };
        out.push(StreamSpec {
            bind: addr(f[0])?,
            dest: addr(f[1])?,
            tx_key: key(f[2], line)?,
            rx_key: key(f[3], line)?,
            label: f.get(4).map(|s| s.to_string()).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Formats streams in the file format `parse` reads.
pub fn format(specs: &[StreamSpec]) -> String {
    let k = |k: &Option<MasterKey>| k.as_ref().map_or("-".to_string(), |k| k.to_sdes_inline());
    let mut s = String::new();
    for sp in specs {
        s.push_str(&format!(
            "{} {} {} {} {}\n",
            sp.bind,
            sp.dest,
            k(&sp.tx_key),
            k(&sp.rx_key),
            sp.label
        ));
    }
    s
}

/// `n` plain streams on loopback: stream `i` binds `bind_ip:(src_base + i)` (0 = ephemeral) and sends to
/// `dest_ip:(dest_base + i)`.
pub fn loopback(
    n: usize,
    src_base: u16,
    dest_base: u16,
    key: Option<&MasterKey>,
) -> Vec<StreamSpec> {
    (0..n)
        .map(|i| {
            let sp = if src_base == 0 {
                0
            } else {
                src_base.wrapping_add(i as u16)
            };
            StreamSpec {
                bind: SocketAddr::from(([127, 0, 0, 1], sp)),
                dest: SocketAddr::from(([127, 0, 0, 1], dest_base.wrapping_add(i as u16))),
                tx_key: key.cloned(),
                rx_key: key.cloned(),
                label: format!("s{i}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let k = MasterKey::generate(DEFAULT_SUITE).unwrap();
        let specs = loopback(3, 20000, 30000, Some(&k));
        let text = format(&specs);
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].bind.port(), 20002);
        assert_eq!(back[2].dest.port(), 30002);
        assert_eq!(back[1].tx_key.as_ref().unwrap().key(), k.key());
        assert!(parse("127.0.0.1:1 nope - -").is_err());
        assert!(parse("127.0.0.1:1").is_err());
        assert!(
            parse("# c\n\n127.0.0.1:1 127.0.0.1:2 - -\n").unwrap()[0]
                .rx_key
                .is_none()
        );
    }
}
