//! Loads the steering program, attaches it to the served interfaces, owns its maps.
//!
//! Attach prefers native (driver) mode and falls back to generic (skb) mode; the mode is returned and logged.
//! Before attaching, a stale `xdp_tollgate` left on the interface by a killed instance (a netlink attachment
//! survives its process; a bpf_link does not) is detached, so a restart never leaves a program steering
//! packets into sockets that no longer exist. Everything attached is detached on drop.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, XskMap};
use aya::programs::{ProgramError, Xdp, XdpMode, loaded_programs};
use aya::{Ebpf, EbpfError};
use tracing::{info, warn};

use super::netlink::{self, Netlink, XdpAttached};

/// The program's function name, as the kernel reports it (`bpftool prog show name xdp_tollgate`).
pub const PROGRAM_NAME: &str = "xdp_tollgate";

/// The compiled `xdp/tollgate.bpf.c` (built by build.rs).
pub static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate.bpf.o"));

/// Map capacities, as declared in the C program.
pub const MAX_PORTS: u32 = 8;
pub const QUEUES_PER_PORT: u32 = 64;
pub const MAX_FLOWS: u32 = 65536;

/// Why the XDP fast path is not available. The binary logs it and falls back to socket mode.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("XDP needs root or CAP_BPF + CAP_NET_ADMIN (+ CAP_NET_RAW for AF_XDP): {0}")]
    Permission(String),
    #[error("interface {0} not found")]
    NoSuchInterface(String),
    #[error("the kernel refused the XDP program (kernel too old or verifier rejection): {0}")]
    Load(String),
    #[error("cannot attach XDP to {iface}: driver mode: {driver}; generic mode: {generic}")]
    Attach {
        iface: String,
        driver: String,
        generic: String,
    },
    #[error(
        "{iface} has XDP program {name:?} (id {id}) attached through a live bpf_link: another instance running?"
    )]
    Busy {
        iface: String,
        name: String,
        id: u32,
    },
    #[error("BPF map {map}: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("netlink: {0}")]
    Netlink(#[from] io::Error),
    #[error("AF_XDP socket on {iface} queue {queue}: {detail}")]
    Socket {
        iface: String,
        queue: u32,
        detail: String,
    },
}

fn is_eperm(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn load_error(e: EbpfError) -> XdpError {
    if is_eperm(&e) {
        XdpError::Permission(e.to_string())
    } else {
        XdpError::Load(e.to_string())
    }
}

fn prog_error(e: ProgramError) -> XdpError {
    if is_eperm(&e) {
        XdpError::Permission(e.to_string())
    } else {
        XdpError::Load(e.to_string())
    }
}

fn map_error(map: &'static str, e: MapError) -> XdpError {
    if is_eperm(&e) {
        XdpError::Permission(format!("map {map}: {e}"))
    } else {
        XdpError::Map {
            map,
            detail: e.to_string(),
        }
    }
}

/// How the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before an skb exists.
    Driver,
    /// After skb allocation: works on every interface, slower.
    Generic,
}

/// Which modes `attach` may try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ModePolicy {
    /// Driver, then generic.
    #[default]
    Auto,
    DriverOnly,
    GenericOnly,
}

/// Flow map key, laid out as `struct tg_flow_key` in the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKeyRaw {
    family: u8,
    pad: u8,
    port_be: u16,
    addr: [u8; 16],
}

// SAFETY: repr(C), integer fields only, no padding (1 + 1 + 2 + 16 = 20 bytes, align 2).
unsafe impl aya::Pod for FlowKeyRaw {}

impl From<SocketAddr> for FlowKeyRaw {
    fn from(a: SocketAddr) -> Self {
        let mut addr = [0u8; 16];
        let family = match a {
            SocketAddr::V4(v) => {
                addr[..4].copy_from_slice(&v.ip().octets());
                4
            }
            SocketAddr::V6(v) => {
                addr = v.ip().octets();
                6
            }
        };
        Self {
            family,
            pad: 0,
            port_be: a.port().to_be(),
            addr,
        }
    }
}

/// Flow map value, laid out as `struct tg_flow_val` in the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowValue {
    /// [`FlowValue::DROP`] or 0.
    pub flags: u32,
    /// The worker that owns the flow (bookkeeping; the redirect follows the receive queue).
    pub worker: u32,
}

impl FlowValue {
    /// Drop the flow's packets in XDP (blocked source, flood).
    pub const DROP: u32 = 1;
}

// SAFETY: repr(C), two u32, no padding.
unsafe impl aya::Pod for FlowValue {}

/// The steering program's counters, summed over CPUs. `passed` is the sum of the pass reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    pub passed: u64,
    pub redirected: u64,
    pub not_ip: u64,
    pub not_udp: u64,
    pub no_flow: u64,
    pub fragment: u64,
    pub malformed: u64,
    pub no_xsk: u64,
    pub flow_drop: u64,
}

/// Handle on the `flows` map; can be cloned to another thread (e.g. the signalling thread).
pub struct FlowMap {
    map: BpfHashMap<MapData, FlowKeyRaw, FlowValue>,
    id: u32,
}

impl FlowMap {
    /// Adds or replaces the entry for a local media address.
    pub fn insert_flow(&mut self, local: SocketAddr, value: FlowValue) -> Result<(), XdpError> {
        self.map
            .insert(FlowKeyRaw::from(local), value, 0)
            .map_err(|e| map_error("flows", e))
    }

    /// Removes the entry; Ok(false) if there was none.
    pub fn remove_flow(&mut self, local: SocketAddr) -> Result<bool, XdpError> {
        match self.map.remove(&FlowKeyRaw::from(local)) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(false)
            }
            Err(e) => Err(map_error("flows", e)),
        }
    }

    pub fn get_flow(&self, local: SocketAddr) -> Result<Option<FlowValue>, XdpError> {
        match self.map.get(&FlowKeyRaw::from(local), 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_error("flows", e)),
        }
    }

    /// A second handle on the same kernel map (opened by map id).
    pub fn try_clone(&self) -> Result<FlowMap, XdpError> {
        Self::open(aya::maps::Map::HashMap(
            MapData::from_id(self.id).map_err(|e| map_error("flows", e))?,
        ))
    }

    fn open(map: aya::maps::Map) -> Result<FlowMap, XdpError> {
        let id = match &map {
            aya::maps::Map::HashMap(d) => d.info().map_err(|e| map_error("flows", e))?.id(),
            _ => {
                return Err(XdpError::Map {
                    map: "flows",
                    detail: "not a BPF hash map".into(),
                });
            }
        };
        let map = BpfHashMap::try_from(map).map_err(|e| map_error("flows", e))?;
        Ok(FlowMap { map, id })
    }
}

struct Attachment {
    ifindex: u32,
    slot: u32,
    iface: String,
    mode: AttachMode,
    link: aya::programs::xdp::XdpLinkId,
}

/// The loaded steering program, its maps and its attachments.
pub struct XdpProgram {
    ebpf: Ebpf,
    flows: FlowMap,
    counters: PerCpuArray<MapData, u64>,
    xsks: XskMap<MapData>,
    port_slots: BpfHashMap<MapData, u32, u32>,
    attached: Vec<Attachment>,
}

fn ifindex_of(iface: &str) -> Result<u32, XdpError> {
    let c = CString::new(iface).map_err(|_| XdpError::NoSuchInterface(iface.to_owned()))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(XdpError::NoSuchInterface(iface.to_owned()))
    } else {
        Ok(idx)
    }
}

impl XdpProgram {
    /// Loads the embedded program through the verifier and opens its maps. Attaches nothing.
    pub fn load() -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT).map_err(load_error)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load(format!("object has no program {PROGRAM_NAME}")))?
            .try_into()
            .map_err(prog_error)?;
        prog.load().map_err(prog_error)?;
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(XdpError::Map {
                map: name,
                detail: "missing from the object".into(),
            })
        };
        let flows = FlowMap::open(take(&mut ebpf, "flows")?)?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, "counters")?)
            .map_err(|e| map_error("counters", e))?;
        let xsks =
            XskMap::try_from(take(&mut ebpf, "xsks_map")?).map_err(|e| map_error("xsks_map", e))?;
        let port_slots = BpfHashMap::try_from(take(&mut ebpf, "port_slots")?)
            .map_err(|e| map_error("port_slots", e))?;
        Ok(Self {
            ebpf,
            flows,
            counters,
            xsks,
            port_slots,
            attached: Vec::new(),
        })
    }

    /// Attaches to `iface` (after sweeping a stale tollgate program off it) and returns the mode used.
    pub fn attach(&mut self, iface: &str, policy: ModePolicy) -> Result<AttachMode, XdpError> {
        let ifindex = ifindex_of(iface)?;
        if let Some(a) = self.attached.iter().find(|a| a.ifindex == ifindex) {
            return Ok(a.mode);
        }
        let slot = (0..MAX_PORTS)
            .find(|s| self.attached.iter().all(|a| a.slot != *s))
            .ok_or_else(|| XdpError::Map {
                map: "port_slots",
                detail: format!("more than {MAX_PORTS} interfaces"),
            })?;
        sweep_stale(iface, ifindex)?;
        self.port_slots
            .insert(ifindex, slot, 0)
            .map_err(|e| map_error("port_slots", e))?;
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load(format!("object has no program {PROGRAM_NAME}")))?
            .try_into()
            .map_err(prog_error)?;
        let mut driver_err = String::from("not tried");
        if policy != ModePolicy::GenericOnly {
            match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
                Ok(link) => {
                    info!(iface, "XDP program attached in driver (native) mode");
                    self.attached.push(Attachment {
                        ifindex,
                        slot,
                        iface: iface.to_owned(),
                        mode: AttachMode::Driver,
                        link,
                    });
                    return Ok(AttachMode::Driver);
                }
                Err(e) if is_eperm(&e) => return Err(XdpError::Permission(e.to_string())),
                Err(e) => driver_err = e.to_string(),
            }
        }
        let mut generic_err = String::from("not tried");
        if policy != ModePolicy::DriverOnly {
            match prog.attach_to_if_index(ifindex, XdpMode::Skb) {
                Ok(link) => {
                    if policy == ModePolicy::Auto {
                        warn!(iface, driver_error = %driver_err, "XDP program attached in generic (skb) mode");
                    } else {
                        info!(iface, "XDP program attached in generic (skb) mode");
                    }
                    self.attached.push(Attachment {
                        ifindex,
                        slot,
                        iface: iface.to_owned(),
                        mode: AttachMode::Generic,
                        link,
                    });
                    return Ok(AttachMode::Generic);
                }
                Err(e) if is_eperm(&e) => return Err(XdpError::Permission(e.to_string())),
                Err(e) => generic_err = e.to_string(),
            }
        }
        Err(XdpError::Attach {
            iface: iface.to_owned(),
            driver: driver_err,
            generic: generic_err,
        })
    }

    /// Interfaces the program is attached to, with ifindex and mode.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, u32, AttachMode)> {
        self.attached
            .iter()
            .map(|a| (a.iface.as_str(), a.ifindex, a.mode))
    }

    /// Detaches from every interface. Also done on drop.
    pub fn detach_all(&mut self) {
        let Some(prog) = self.ebpf.program_mut(PROGRAM_NAME) else {
            return;
        };
        let Ok(prog): Result<&mut Xdp, _> = prog.try_into() else {
            return;
        };
        for a in self.attached.drain(..) {
            let _ = self.port_slots.remove(&a.ifindex);
            match prog.detach(a.link) {
                Ok(()) => info!(iface = a.iface, "XDP program detached"),
                Err(e) => warn!(iface = a.iface, error = %e, "XDP detach failed"),
            }
        }
    }

    fn xsk_index(&self, ifindex: u32, queue: u32) -> Result<u32, XdpError> {
        let a = self
            .attached
            .iter()
            .find(|a| a.ifindex == ifindex)
            .ok_or_else(|| XdpError::Map {
                map: "xsks_map",
                detail: format!("ifindex {ifindex} has no XDP attachment"),
            })?;
        if queue >= QUEUES_PER_PORT {
            return Err(XdpError::Map {
                map: "xsks_map",
                detail: format!("queue {queue} >= {QUEUES_PER_PORT}"),
            });
        }
        Ok(a.slot * QUEUES_PER_PORT + queue)
    }

    /// Steers the flows received on (ifindex, queue) to the AF_XDP socket `fd`, which must be bound to that
    /// interface queue. The program must be attached to the interface first.
    pub fn register_xsk(&mut self, ifindex: u32, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        let idx = self.xsk_index(ifindex, queue)?;
        self.xsks
            .set(idx, fd, 0)
            .map_err(|e| map_error("xsks_map", e))
    }

    /// Stops steering to the socket of (ifindex, queue): flows there go to the kernel (`no_xsk`).
    pub fn unregister_xsk(&mut self, ifindex: u32, queue: u32) -> Result<(), XdpError> {
        let idx = self.xsk_index(ifindex, queue)?;
        match self.xsks.unset(idx) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(map_error("xsks_map", e)),
        }
    }

    pub fn flows(&mut self) -> &mut FlowMap {
        &mut self.flows
    }

    /// A second handle on the flow map, e.g. for the signalling thread.
    pub fn flows_clone(&self) -> Result<FlowMap, XdpError> {
        self.flows.try_clone()
    }

    pub fn insert_flow(&mut self, local: SocketAddr, value: FlowValue) -> Result<(), XdpError> {
        self.flows.insert_flow(local, value)
    }

    pub fn remove_flow(&mut self, local: SocketAddr) -> Result<bool, XdpError> {
        self.flows.remove_flow(local)
    }

    /// Runs the loaded program once over `frame` in the kernel (BPF_PROG_TEST_RUN, as if received on the
    /// loopback interface, rx queue 0) and returns its XDP action (1 drop, 2 pass, 4 redirect). Counters
    /// move as for a real packet. For diagnostics and for testing the program against `rewrite::parse_udp`.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, XdpError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load(format!("object has no program {PROGRAM_NAME}")))?
            .try_into()
            .map_err(prog_error)?;
        let fd = prog.fd().map_err(prog_error)?.as_fd().as_raw_fd();
        // The test_run member of `union bpf_attr` (include/uapi/linux/bpf.h).
        #[repr(C)]
        #[derive(Default)]
        struct TestRun {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
            ctx_size_in: u32,
            ctx_size_out: u32,
            ctx_in: u64,
            ctx_out: u64,
            flags: u32,
            cpu: u32,
            batch_size: u32,
            _pad: u32,
        }
        let mut attr = TestRun {
            prog_fd: fd as u32,
            data_size_in: u32::try_from(frame.len())
                .map_err(|_| XdpError::Load("frame too long".into()))?,
            data_in: frame.as_ptr() as u64,
            repeat: 1,
            ..TestRun::default()
        };
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size passed; data_in points at
        // `frame` for the duration of the call; no output buffers are given.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRun,
                size_of::<TestRun>() as u32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(
                if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                    XdpError::Permission(e.to_string())
                } else {
                    XdpError::Load(format!("BPF_PROG_TEST_RUN: {e}"))
                },
            );
        }
        Ok(attr.retval)
    }

    /// Sums the per-CPU counters.
    pub fn read_counters(&self) -> Result<XdpCounters, XdpError> {
        let mut v = [0u64; 9];
        for (i, slot) in v.iter_mut().enumerate() {
            let per_cpu = self
                .counters
                .get(&(i as u32), 0)
                .map_err(|e| map_error("counters", e))?;
            *slot = per_cpu.iter().sum();
        }
        Ok(XdpCounters {
            passed: v[0],
            redirected: v[1],
            not_ip: v[2],
            not_udp: v[3],
            no_flow: v[4],
            fragment: v[5],
            malformed: v[6],
            no_xsk: v[7],
            flow_drop: v[8],
        })
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Detaches every `xdp_tollgate` program attached to the interface through netlink (what a killed
/// instance on a kernel without bpf_link for XDP, or an `ip link set ... xdp` by hand, leaves behind).
/// Programs with another name are left alone and make the attach fail later with a clear error.
/// Returns the number of programs removed.
pub fn sweep_stale(iface: &str, ifindex: u32) -> Result<usize, XdpError> {
    let mut nl = Netlink::open(0)?;
    let XdpAttached { drv, skb, hw } = nl.xdp_attached(ifindex)?;
    let mut removed = 0;
    for (id, mode) in [
        (drv, netlink::XDP_FLAGS_DRV_MODE),
        (skb, netlink::XDP_FLAGS_SKB_MODE),
        (hw, netlink::XDP_FLAGS_HW_MODE),
    ] {
        let Some(id) = id else { continue };
        let Some(info) = loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
        else {
            continue;
        };
        let name = String::from_utf8_lossy(info.name()).into_owned();
        if name != PROGRAM_NAME {
            continue;
        }
        let fd = info.fd().map_err(prog_error)?;
        match nl.xdp_detach(ifindex, mode, fd.as_fd().as_raw_fd()) {
            Ok(()) => {
                warn!(
                    iface,
                    id, "detached a stale {PROGRAM_NAME} left by a previous instance"
                );
                removed += 1;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(XdpError::Busy {
                    iface: iface.to_owned(),
                    name,
                    id,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(XdpError::Permission(e.to_string()));
            }
            Err(e) => return Err(XdpError::Netlink(e)),
        }
    }
    Ok(removed)
}

/// Whether an `xdp_tollgate` program is attached to the interface (any mode).
pub fn tollgate_attached(ifindex: u32) -> Result<bool, XdpError> {
    let mut nl = Netlink::open(0)?;
    let XdpAttached { drv, skb, hw } = nl.xdp_attached(ifindex)?;
    for id in [drv, skb, hw].into_iter().flatten() {
        if loaded_programs()
            .filter_map(Result::ok)
            .any(|p| p.id() == id && p.name() == PROGRAM_NAME.as_bytes())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The interface index for a name.
pub fn if_index(iface: &str) -> Result<u32, XdpError> {
    ifindex_of(iface)
}
