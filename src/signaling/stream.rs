//! Byte streams: the receive buffer a handler reads SIP from, the framer interface, and the layer that sits
//! between socket bytes and SIP bytes (plain now, TLS later).

use std::fmt;
use std::net::SocketAddr;

use super::handler::ListenerId;

/// Received application bytes of one connection that the handler has not consumed yet.
///
/// The loop appends what arrives; the handler takes whole frames (messages) from the front and leaves a partial
/// one in place until more bytes arrive. Consumed space is reclaimed by moving the tail to the front only when
/// room is needed, so a connection's buffer stops allocating once it reached its working size.
#[derive(Debug, Default)]
pub struct StreamBuf {
    buf: Vec<u8>,
    start: usize,
}

/// Finds message boundaries in a byte stream.
pub trait StreamFramer {
    /// What the framer says about bytes that can never form a message (the loop's caller decides to close).
    type Error;

    /// Length of the first complete message at the start of `data`, `None` if more bytes are needed.
    fn frame_len(&mut self, data: &[u8]) -> Result<Option<usize>, Self::Error>;
}

impl StreamBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// Bytes not consumed yet.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or(&[])
    }

    /// Number of bytes not consumed yet.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True when everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops `n` bytes from the front (clamped to what is there).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Removes the first `len` bytes and returns them; they stay readable until the buffer is next changed.
    pub fn take_front(&mut self, len: usize) -> &[u8] {
        let begin = self.start;
        let end = (begin + len).min(self.buf.len());
        self.start = end;
        self.buf.get(begin..end).unwrap_or(&[])
    }

    /// The next complete frame according to `framer`, removed from the buffer, or `None` if incomplete.
    pub fn next_frame<F: StreamFramer>(
        &mut self,
        framer: &mut F,
    ) -> Result<Option<&[u8]>, F::Error> {
        match framer.frame_len(self.data())? {
            Some(n) if n > 0 && n <= self.len() => Ok(Some(self.take_front(n))),
            _ => Ok(None),
        }
    }

    /// Appends bytes at the end, first reclaiming consumed space at the front if that avoids growing.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.buf.len() + bytes.len() > self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }
}

/// An error of a [`StreamLayer`] (e.g. a TLS alert); the loop closes the connection with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerError(pub String);

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream layer: {}", self.0)
    }
}

impl std::error::Error for LayerError {}

/// What sits between a connection's socket bytes and its SIP bytes.
///
/// The loop only ever moves wire bytes; a layer turns them into application bytes and back. A rustls session
/// fits here: `on_connected` writes the ClientHello, `read_wire` feeds `read_tls`/`process_new_packets` and
/// drains plaintext into `app_in` (and handshake replies into `wire_out`), `write_app` writes plaintext and
/// drains the records into `wire_out`.
pub trait StreamLayer: Send {
    /// The transport connection is up (outbound connect finished or inbound accept).
    fn on_connected(&mut self, wire_out: &mut Vec<u8>) -> Result<(), LayerError>;

    /// Bytes read from the socket.
    fn read_wire(
        &mut self,
        wire: &[u8],
        app_in: &mut StreamBuf,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), LayerError>;

    /// Application bytes to send.
    fn write_app(&mut self, app: &[u8], wire_out: &mut Vec<u8>) -> Result<(), LayerError>;

    /// Something begun on the wire is not finished yet (a TLS handshake); counts as an incomplete message
    /// for the loop's message timeout.
    fn in_progress(&self) -> bool {
        false
    }
}

/// What a [`LayerFactory`] knows about the connection it builds a layer for.
#[derive(Debug, Clone, Copy)]
pub struct LayerContext {
    pub peer: SocketAddr,
    /// Opened by us (TLS client) rather than accepted (TLS server).
    pub outbound: bool,
    /// The listener that accepted it, for inbound connections.
    pub listener: Option<ListenerId>,
}

/// Builds the layer of each TLS connection (set with `SigLoop::set_tls_layer`).
pub type LayerFactory =
    Box<dyn FnMut(&LayerContext) -> Result<Box<dyn StreamLayer>, LayerError> + Send>;

/// Plain TCP: socket bytes are SIP bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainLayer;

impl StreamLayer for PlainLayer {
    fn on_connected(&mut self, _wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        Ok(())
    }

    fn read_wire(
        &mut self,
        wire: &[u8],
        app_in: &mut StreamBuf,
        _wire_out: &mut Vec<u8>,
    ) -> Result<(), LayerError> {
        app_in.extend_from_slice(wire);
        Ok(())
    }

    fn write_app(&mut self, app: &[u8], wire_out: &mut Vec<u8>) -> Result<(), LayerError> {
        wire_out.extend_from_slice(app);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct CrlfCrlf;
    impl StreamFramer for CrlfCrlf {
        type Error = ();
        fn frame_len(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
            Ok(memchr::memmem::find(data, b"\r\n\r\n").map(|i| i + 4))
        }
    }

    #[test]
    fn frames_split_and_glued() {
        let mut b = StreamBuf::with_capacity(16);
        b.extend_from_slice(b"AB\r\n");
        assert_eq!(b.next_frame(&mut CrlfCrlf), Ok(None));
        b.extend_from_slice(b"\r\nCD\r\n\r\nE");
        assert_eq!(b.next_frame(&mut CrlfCrlf), Ok(Some(&b"AB\r\n\r\n"[..])));
        assert_eq!(b.next_frame(&mut CrlfCrlf), Ok(Some(&b"CD\r\n\r\n"[..])));
        assert_eq!(b.next_frame(&mut CrlfCrlf), Ok(None));
        assert_eq!(b.data(), b"E");
        b.consume(10);
        assert!(b.is_empty());
    }

    #[test]
    fn reclaims_front_before_growing() {
        let mut b = StreamBuf::with_capacity(8);
        b.extend_from_slice(b"12345678");
        b.consume(6);
        b.extend_from_slice(b"abc");
        assert_eq!(b.data(), b"78abc");
        assert_eq!(b.buf.capacity(), 8);
    }
}
