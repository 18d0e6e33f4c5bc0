//! Cost of the TLS stream layer per SIP message, in memory (no sockets): a client `TlsLayer` encrypts a
//! ~900-byte INVITE-sized message (`write_app`) and a server `TlsLayer` decrypts it into the connection's
//! `StreamBuf` (`read_wire`), side by side with `PlainLayer` doing the same copy, after a TLS 1.3 handshake.
//!
//! `cargo bench --bench sig_tls -- --warm-up-time 1 --measurement-time 3`

use std::net::SocketAddr;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tollgate::signaling::{
    PlainLayer, StreamBuf, StreamLayer, TlsClient, TlsClientSet, TlsServer, TlsServerFiles,
};

const NAME: &str = "sip.tollgate.test";

fn write_pki(dir: &Path) -> (TlsServerFiles, std::path::PathBuf) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "bench CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![NAME.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (c, k, a) = (dir.join("s.crt"), dir.join("s.key"), dir.join("ca.pem"));
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::write(&a, ca.pem()).unwrap();
    (TlsServerFiles::single(c, k), a)
}

/// Runs the handshake between two layers by shuttling their output.
fn handshake(client: &mut dyn StreamLayer, server: &mut dyn StreamLayer) {
    let (mut app_c, mut app_s) = (StreamBuf::default(), StreamBuf::default());
    let mut to_server = Vec::new();
    client.on_connected(&mut to_server).unwrap();
    for _ in 0..10 {
        let mut to_client = Vec::new();
        server
            .read_wire(&to_server, &mut app_s, &mut to_client)
            .unwrap();
        to_server.clear();
        client
            .read_wire(&to_client, &mut app_c, &mut to_server)
            .unwrap();
        if to_server.is_empty() && to_client.is_empty() {
            return;
        }
    }
    panic!("handshake did not finish");
}

fn one_message(
    client: &mut dyn StreamLayer,
    server: &mut dyn StreamLayer,
    msg: &[u8],
    wire: &mut Vec<u8>,
    app: &mut StreamBuf,
    back: &mut Vec<u8>,
) {
    wire.clear();
    client.write_app(msg, wire).unwrap();
    server.read_wire(wire, app, back).unwrap();
    assert_eq!(app.len(), msg.len());
    app.consume(msg.len());
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tgtls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (files, ca) = write_pki(&dir);
    let server = TlsServer::from_files(files).unwrap();
    let clients = TlsClientSet::new();
    let peer: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    clients
        .add_target(peer, NAME, &TlsClient::new(Some(&ca), None).unwrap())
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let msg = vec![b'x'; 900];
    let mut g = c.benchmark_group("stream_layer_900B");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    let (mut wire, mut app, mut back) = (
        Vec::with_capacity(4096),
        StreamBuf::with_capacity(4096),
        Vec::new(),
    );

    let (mut pc, mut ps) = (PlainLayer, PlainLayer);
    g.bench_function("plain", |b| {
        b.iter(|| one_message(&mut pc, &mut ps, &msg, &mut wire, &mut app, &mut back))
    });

    let mut tc = clients.layer_for(peer).unwrap();
    let mut ts = server.layer_for(peer).unwrap();
    handshake(&mut tc, &mut ts);
    g.bench_function("tls13_aes128gcm_or_chacha", |b| {
        b.iter(|| one_message(&mut tc, &mut ts, &msg, &mut wire, &mut app, &mut back))
    });
    g.finish();

    c.bench_function("tls13_handshake_in_memory", |b| {
        b.iter(|| {
            let mut tc = clients.layer_for(peer).unwrap();
            let mut ts = server.layer_for(peer).unwrap();
            handshake(&mut tc, &mut ts);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
