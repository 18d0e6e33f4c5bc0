//! Classic BPF programs for the packet sockets: the receive filter ("UDP to one of our media addresses, port
//! in [min, max], not a fragment") and the fanout demultiplexer ("worker = destination port % workers").
//!
//! Both run on frames that start at the network header: AF_PACKET `SOCK_DGRAM` sockets and fanout groups see
//! received packets after the link-layer header has been pulled.

use std::net::{Ipv4Addr, Ipv6Addr};

// Instruction classes and fields, from <linux/filter.h>.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const AND: u16 = 0x50;
const MOD: u16 = 0x90;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const RET_A: u16 = 0x10;

/// Bytes a matching packet is delivered with: all of it (the driver's buffer bounds it, MSG_TRUNC tells).
pub const ACCEPT_ALL: u32 = 0x0004_0000;

/// One instruction, laid out like `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Errors building a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    #[error("no media address of this family")]
    NoAddress,
    #[error("port range {0}..={1} is empty")]
    EmptyRange(u16, u16),
    #[error("program too long for 8-bit jump offsets")]
    TooLong,
    #[error("worker count must be 1..=65535")]
    Workers,
}

/// Jump targets are symbolic while building; all jumps go forward, as cBPF requires.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tgt {
    Next,
    Label(u16),
}

struct Asm {
    code: Vec<(Insn, Tgt, Tgt)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn new() -> Self {
        Self {
            code: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> Tgt {
        self.labels.push(None);
        Tgt::Label((self.labels.len() - 1) as u16)
    }
    fn bind(&mut self, l: Tgt) {
        if let Tgt::Label(i) = l
            && let Some(slot) = self.labels.get_mut(usize::from(i))
        {
            *slot = Some(self.code.len());
        }
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((
            Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Tgt::Next,
            Tgt::Next,
        ));
    }
    fn jmp(&mut self, code: u16, k: u32, t: Tgt, f: Tgt) {
        self.code.push((
            Insn {
                code: JMP | code | K,
                jt: 0,
                jf: 0,
                k,
            },
            t,
            f,
        ));
    }
    fn finish(self) -> Result<Vec<Insn>, BpfError> {
        let mut out = Vec::with_capacity(self.code.len());
        for (pc, (mut insn, t, f)) in self.code.iter().copied().enumerate() {
            let off = |tgt: Tgt| -> Result<u32, BpfError> {
                match tgt {
                    Tgt::Next => Ok(0),
                    Tgt::Label(l) => {
                        let at = self
                            .labels
                            .get(usize::from(l))
                            .copied()
                            .flatten()
                            .ok_or(BpfError::TooLong)?;
                        at.checked_sub(pc + 1)
                            .map(|d| d as u32)
                            .ok_or(BpfError::TooLong)
                    }
                }
            };
            if insn.code == JMP | JA | K {
                insn.k = off(t)?;
            } else if insn.code & 0x07 == JMP {
                insn.jt = u8::try_from(off(t)?).map_err(|_| BpfError::TooLong)?;
                insn.jf = u8::try_from(off(f)?).map_err(|_| BpfError::TooLong)?;
            }
            out.push(insn);
        }
        Ok(out)
    }
}

fn check_range(min: u16, max: u16) -> Result<(), BpfError> {
    if min > max {
        Err(BpfError::EmptyRange(min, max))
    } else {
        Ok(())
    }
}

/// Tail shared by both families: destination port (at A) in [min, max] → accept, else drop.
fn port_check(a: &mut Asm, min: u16, max: u16, drop: Tgt) {
    let accept = a.label();
    a.jmp(JGE, u32::from(min), Tgt::Next, drop);
    a.jmp(JGT, u32::from(max), drop, accept);
    a.bind(accept);
    a.op(RET | K, ACCEPT_ALL);
}

/// Receive filter for an `ETH_P_IP` packet socket.
pub fn ipv4_filter(addrs: &[Ipv4Addr], min: u16, max: u16) -> Result<Vec<Insn>, BpfError> {
    check_range(min, max)?;
    if addrs.is_empty() {
        return Err(BpfError::NoAddress);
    }
    let mut a = Asm::new();
    let drop = a.label();
    let port = a.label();
    a.op(LD | B | ABS, 0);
    a.op(ALU | AND | K, 0xf0);
    a.jmp(JEQ, 0x40, Tgt::Next, drop);
    a.op(LD | B | ABS, 9);
    a.jmp(JEQ, 17, Tgt::Next, drop);
    a.op(LD | H | ABS, 6);
    a.jmp(JSET, 0x3fff, drop, Tgt::Next); // MF or fragment offset: let the kernel have it
    a.op(LD | W | ABS, 16);
    for (i, ip) in addrs.iter().enumerate() {
        let miss = if i + 1 == addrs.len() {
            drop
        } else {
            Tgt::Next
        };
        a.jmp(JEQ, u32::from(*ip), port, miss);
    }
    a.bind(port);
    a.op(LDX | B | MSH, 0); // X = 4 * IHL
    a.op(LD | H | IND, 2);
    port_check(&mut a, min, max, drop);
    a.bind(drop);
    a.op(RET | K, 0);
    a.finish()
}

/// Receive filter for an `ETH_P_IPV6` packet socket (UDP directly after the fixed header; extension headers
/// go to the kernel).
pub fn ipv6_filter(addrs: &[Ipv6Addr], min: u16, max: u16) -> Result<Vec<Insn>, BpfError> {
    check_range(min, max)?;
    if addrs.is_empty() {
        return Err(BpfError::NoAddress);
    }
    let mut a = Asm::new();
    let drop = a.label();
    let port = a.label();
    a.op(LD | B | ABS, 0);
    a.op(ALU | AND | K, 0xf0);
    a.jmp(JEQ, 0x60, Tgt::Next, drop);
    a.op(LD | B | ABS, 6);
    a.jmp(JEQ, 17, Tgt::Next, drop);
    for (i, ip) in addrs.iter().enumerate() {
        let miss = if i + 1 == addrs.len() {
            drop
        } else {
            a.label()
        };
        let o = ip.octets();
        for w in 0..4 {
            let word = u32::from_be_bytes([o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]]);
            a.op(LD | W | ABS, 24 + 4 * w as u32);
            let hit = if w == 3 { port } else { Tgt::Next };
            a.jmp(JEQ, word, hit, miss);
        }
        a.bind(miss);
    }
    a.bind(port);
    a.op(LD | H | ABS, 42);
    port_check(&mut a, min, max, drop);
    a.bind(drop);
    a.op(RET | K, 0);
    a.finish()
}

/// Fanout demultiplexer (PACKET_FANOUT_CBPF): socket index = destination port % workers, so every packet of
/// a flow (keyed by our local address) reaches the same worker whatever its source.
pub fn fanout_by_dport(ipv6: bool, workers: usize) -> Result<Vec<Insn>, BpfError> {
    let n = u32::try_from(workers)
        .ok()
        .filter(|n| (1..=0xffff).contains(n))
        .ok_or(BpfError::Workers)?;
    let mut a = Asm::new();
    if ipv6 {
        a.op(LD | H | ABS, 42);
    } else {
        a.op(LDX | B | MSH, 0);
        a.op(LD | H | IND, 2);
    }
    a.op(ALU | MOD | K, n);
    a.op(RET | RET_A, 0);
    a.finish()
}

/// Which worker the fanout program sends a port to (the same arithmetic, for routing commands).
pub fn worker_for_port(port: u16, workers: usize) -> usize {
    usize::from(port) % workers.max(1)
}

/// A tiny cBPF interpreter for the instructions above, so tests check what the programs do, not how they
/// are spelled. Out-of-bounds loads end the program with 0, as in the kernel.
#[cfg(test)]
pub fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let load = |at: u32, size: usize| -> Option<u32> {
        let at = at as usize;
        let b = pkt.get(at..at + size)?;
        Some(b.iter().fold(0u32, |v, &byte| (v << 8) | u32::from(byte)))
    };
    while let Some(i) = prog.get(pc) {
        pc += 1;
        let size = match i.code & 0x18 {
            W => 4,
            H => 2,
            _ => 1,
        };
        match i.code & 0x07 {
            LD => match i.code & 0xe0 {
                ABS => match load(i.k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                IND => match load(x.wrapping_add(i.k), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                m => panic!("ld mode {m:#x}"),
            },
            LDX => match load(i.k, 1) {
                Some(v) => x = 4 * (v & 0xf),
                None => return 0,
            },
            ALU => match i.code & 0xf0 {
                AND => a &= i.k,
                MOD => a %= i.k,
                op => panic!("alu {op:#x}"),
            },
            JMP => {
                let take = match i.code & 0xf0 {
                    JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    JEQ => a == i.k,
                    JGT => a > i.k,
                    JGE => a >= i.k,
                    JSET => a & i.k != 0,
                    op => panic!("jmp {op:#x}"),
                };
                pc += usize::from(if take { i.jt } else { i.jf });
            }
            RET => return if i.code & RET_A != 0 { a } else { i.k },
            c => panic!("class {c:#x}"),
        }
    }
    panic!("fell off the end")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::socket::wire::write_headers;
    use std::net::SocketAddr;

    fn datagram(src: &str, dst: &str) -> Vec<u8> {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut buf = vec![0u8; 200];
        let start = write_headers(&mut buf, 100, 12, src, dst, 0).unwrap();
        buf[start..112].to_vec()
    }

    #[test]
    fn ipv4_filter_accepts_our_addresses_and_range_only() {
        let addrs = ["10.1.1.1".parse().unwrap(), "10.2.2.2".parse().unwrap()];
        let f = ipv4_filter(&addrs, 30000, 49999).unwrap();
        let ok = |dst: &str| run(&f, &datagram("192.0.2.9:5000", dst)) != 0;
        assert!(ok("10.1.1.1:30000"));
        assert!(ok("10.2.2.2:49999"));
        assert!(ok("10.1.1.1:40000"));
        assert!(!ok("10.1.1.1:29999"));
        assert!(!ok("10.1.1.1:50000"));
        assert!(!ok("10.1.1.1:5060"));
        assert!(!ok("10.3.3.3:30000"));
        let mut frag = datagram("192.0.2.9:5000", "10.1.1.1:30000");
        frag[6] = 0x20;
        assert_eq!(run(&f, &frag), 0);
        let mut tcp = datagram("192.0.2.9:5000", "10.1.1.1:30000");
        tcp[9] = 6;
        assert_eq!(run(&f, &tcp), 0);
        // IPv4 options move the UDP header: the filter follows IHL.
        let mut opt = datagram("192.0.2.9:5000", "10.1.1.1:30000");
        opt[0] = 0x46;
        opt.splice(20..20, [1, 1, 1, 1]);
        assert_ne!(run(&f, &opt), 0);
        opt[24 + 2] = 0x13; // port 0x1388.. = 5000-ish: out of range
        assert_eq!(run(&f, &opt), 0);
        assert_eq!(run(&f, &[0x45]), 0);
    }

    #[test]
    fn ipv6_filter_accepts_our_addresses_and_range_only() {
        let addrs = [
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        ];
        let f = ipv6_filter(&addrs, 30000, 49999).unwrap();
        let ok = |dst: &str| run(&f, &datagram("[2001:db8::9]:5000", dst)) != 0;
        assert!(ok("[2001:db8::1]:30000"));
        assert!(ok("[2001:db8::2]:49999"));
        assert!(!ok("[2001:db8::3]:30000"));
        assert!(!ok("[2001:db8:0:1::1]:30000"));
        assert!(!ok("[2001:db8::1]:50000"));
        assert!(!ok("[2001:db8::1]:29999"));
        let v4 = datagram("192.0.2.9:5000", "10.1.1.1:30000");
        assert_eq!(run(&f, &v4), 0);
    }

    #[test]
    fn fanout_spreads_by_destination_port() {
        for workers in [1usize, 2, 3, 7] {
            let f4 = fanout_by_dport(false, workers).unwrap();
            let f6 = fanout_by_dport(true, workers).unwrap();
            for port in [30000u16, 30001, 30002, 49998, 65535] {
                let want = worker_for_port(port, workers) as u32;
                let p4 = datagram("192.0.2.9:7", &format!("10.1.1.1:{port}"));
                let p6 = datagram("[2001:db8::9]:7", &format!("[2001:db8::1]:{port}"));
                assert_eq!(run(&f4, &p4), want);
                assert_eq!(run(&f6, &p6), want);
            }
        }
        assert_eq!(fanout_by_dport(false, 0), Err(BpfError::Workers));
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert_eq!(ipv4_filter(&[], 1, 2), Err(BpfError::NoAddress));
        assert_eq!(
            ipv4_filter(&["10.0.0.1".parse().unwrap()], 3, 2),
            Err(BpfError::EmptyRange(3, 2))
        );
        let many: Vec<Ipv6Addr> = (0..100u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
            .collect();
        assert_eq!(ipv6_filter(&many, 1, 2), Err(BpfError::TooLong));
        let ok: Vec<Ipv4Addr> = (0..50u8).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        assert!(ipv4_filter(&ok, 1, 2).is_ok());
    }
}
