//! Sockets: TCP connections through the network service, for apps whose manifest names
//! destinations (`connect = ["devhost:7"]`, `call = ["net"]`) or ports to listen on
//! (`listen = [8080]`).
//!
//! [`TcpListener::bind`] listens on a port the manifest names and [`TcpListener::accept`]
//! waits for a connection and returns it as a [`TcpStream`].
//! [`TcpStream::connect`] opens a connection to `host:port`, [`TcpStream::read`] and
//! [`TcpStream::write`] block until at least one byte moved (or the socket's timeout, 10 s of
//! guest time by default, passed: `ETIMEDOUT`), [`TcpStream::poll`] tells readiness without
//! blocking and [`TcpStream::wait`] waits for it. Every failure is an [`Error`]:
//! `EACCES` for a destination the manifest does not name (or an app with no network
//! capability), `ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`, `ENOTCONN`, `ENOENT` for an
//! unknown host name, `EPIPE` when the service is gone. Nothing here panics.
//!
//! The wire format between apps, the network service and the driver is defined here too
//! (the `proto` constants): one IPC message per request, `[op][socket][payload]`, and a
//! reply `[status: i32 LE][payload]` whose negative status is an [`Error`].

use crate::Error;

/// Requests to the network service.
pub mod op {
    /// `[port: u16 LE][host]` → socket number.
    pub const CONNECT: u8 = 1;
    /// `[data]` → bytes taken (0: no room yet).
    pub const SEND: u8 = 2;
    /// `[max: u16 LE]` → bytes read, following the status (0: end of stream).
    pub const RECV: u8 = 3;
    pub const CLOSE: u8 = 4;
    /// → readiness bits ([`super::READABLE`], [`super::WRITABLE`], [`super::CONNECTED`]);
    /// on a listening socket, [`super::READABLE`] when a connection waits to be accepted.
    pub const POLL: u8 = 5;
    /// `[port: u16 LE]` → the number of a listening socket.
    pub const LISTEN: u8 = 6;
    /// On a listening socket: → the socket number of an established connection
    /// (`EAGAIN` while none waits).
    pub const ACCEPT: u8 = 7;
    /// `[interest: u32 LE]` → the readiness bits of `interest` that hold now; 0: none yet,
    /// and the service sets [`super::READY_NOTIFICATION`] on the caller once one does.
    pub const WAIT: u8 = 8;
    /// The caller starts afresh: every socket it holds (left by an earlier run of the same
    /// app, which has the same badge) is aborted and freed. The client sends it before a
    /// process's first socket.
    pub const RESET: u8 = 9;
    /// Driver only: `[MAC: 6 bytes]`, the driver (re)started; every socket is reset.
    pub const ATTACH: u8 = 16;
    /// Driver only: `[frame]` received; if the socket byte is 1 (the driver has a free
    /// transmit buffer) the reply may carry a frame to send.
    pub const FRAME: u8 = 17;
    /// Driver only: the reply carries a frame to send, or is empty.
    pub const TAKE: u8 = 18;
}

/// Readiness bits.
pub const READABLE: u32 = 1;
pub const WRITABLE: u32 = 2;
pub const CONNECTED: u32 = 4;
/// The notification bit the service sets on the driver when it has frames to send.
pub const TX_PENDING: u32 = 1 << 31;
/// The notification bit the service sets on an app when a socket it waits on (`WAIT`)
/// became ready.
pub const READY_NOTIFICATION: u32 = 1 << 30;
/// The most sockets (connections and listeners) one app holds at a time; one more is
/// `ENOMEM`.
pub const SOCKETS_PER_APP: usize = 4;
/// Status + op header sizes.
pub const STATUS_LEN: usize = 4;
pub const REQUEST_HEADER: usize = 2;
/// The most payload one request or reply carries.
pub const PAYLOAD_MAX: usize = crate::MESSAGE_MAX - STATUS_LEN;

/// Splits a reply into its status (or error) and payload.
pub fn parse_reply(reply: &[u8]) -> Result<(u32, &[u8]), Error> {
    let status = reply.get(..STATUS_LEN).ok_or(Error::Invalid)?;
    let status = i32::from_le_bytes([status[0], status[1], status[2], status[3]]);
    if status < 0 {
        return Err(Error::from_i32(status).unwrap_or(Error::Io));
    }
    Ok((status as u32, &reply[STATUS_LEN..]))
}

/// Writes a reply's status; returns the header length.
pub fn put_status(reply: &mut [u8], status: Result<u32, Error>) -> usize {
    let value = match status {
        Ok(v) => v as i32,
        Err(e) => e as i32,
    };
    reply[..STATUS_LEN].copy_from_slice(&value.to_le_bytes());
    STATUS_LEN
}

#[cfg(target_arch = "arm")]
pub use client::*;

#[cfg(target_arch = "arm")]
mod client {
    use super::*;
    use crate::{Handle, HandleKind, MESSAGE_MAX};
    use core::sync::atomic::{AtomicBool, Ordering};

    /// The default timeout of a blocking call, in ms of guest time.
    pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;

    /// Waits until a bit of `interest` holds on `socket`, or `timeout_ms` after `start`:
    /// asks the service (`WAIT`), and while nothing holds sleeps in the kernel until the
    /// service's notification (or the timeout) — no checks in between.
    fn wait_for(
        service: Handle,
        socket: u8,
        interest: u32,
        start: u32,
        timeout_ms: u32,
    ) -> Result<u32, Error> {
        loop {
            let mut reply = [0u8; 16];
            let (ready, _) = request(service, op::WAIT, socket, &interest.to_le_bytes(), &mut reply)?;
            if ready & interest != 0 {
                return Ok(ready & interest);
            }
            let elapsed = now().wrapping_sub(start);
            if elapsed >= timeout_ms {
                return Err(Error::TimedOut);
            }
            if timeout_ms == u32::MAX {
                let _ = crate::wait(READY_NOTIFICATION); // a non-empty mask: cannot fail
            } else {
                let _ = crate::wait_timeout(READY_NOTIFICATION, timeout_ms - elapsed);
            }
        }
    }

    /// One TCP connection.
    pub struct TcpStream {
        service: Handle,
        socket: u8,
        timeout_ms: u32,
        closed: bool,
    }

    fn request(
        service: Handle,
        op: u8,
        socket: u8,
        payload: &[u8],
        reply: &mut [u8],
    ) -> Result<(u32, usize), Error> {
        let mut message = [0u8; MESSAGE_MAX];
        let len = REQUEST_HEADER + payload.len();
        if len > MESSAGE_MAX {
            return Err(Error::Invalid);
        }
        message[0] = op;
        message[1] = socket;
        message[REQUEST_HEADER..len].copy_from_slice(payload);
        let n = crate::call(service, &message[..len], reply)?;
        let (status, rest) = parse_reply(&reply[..n.min(reply.len())])?;
        Ok((status, rest.len()))
    }

    /// The network service. Once per process, before its first socket, the service is told
    /// the app starts afresh ([`op::RESET`]): sockets an earlier run left open (it crashed or
    /// was restarted, and nobody closed them) would otherwise keep the app's share and the
    /// service's.
    fn service() -> Result<Handle, Error> {
        static STARTED_AFRESH: AtomicBool = AtomicBool::new(false);
        let service = crate::lookup(HandleKind::Call, "net")?;
        if !STARTED_AFRESH.load(Ordering::Relaxed) {
            request(service, op::RESET, 0, &[], &mut [0u8; 16])?;
            STARTED_AFRESH.store(true, Ordering::Relaxed);
        }
        Ok(service)
    }

    /// Milliseconds since boot.
    fn now() -> u32 {
        crate::info().uptime_ms
    }

    impl TcpStream {
        /// Connects to `host:port` (a name from the image's host table or an IPv4 address),
        /// waiting until the connection is established.
        pub fn connect(host: &str, port: u16) -> Result<TcpStream, Error> {
            let service = service()?;
            if host.len() > PAYLOAD_MAX - 2 {
                return Err(Error::Invalid);
            }
            let mut payload = [0u8; 64];
            let payload = payload.get_mut(..2 + host.len()).ok_or(Error::Invalid)?;
            payload[..2].copy_from_slice(&port.to_le_bytes());
            payload[2..].copy_from_slice(host.as_bytes());
            let mut reply = [0u8; 16];
            let (socket, _) = request(service, op::CONNECT, 0, payload, &mut reply)?;
            let stream =
                TcpStream { service, socket: socket as u8, timeout_ms: DEFAULT_TIMEOUT_MS, closed: false };
            stream.wait(CONNECTED)?;
            Ok(stream)
        }

        /// Sets the timeout of the blocking calls (`None`: wait without a bound).
        pub fn set_timeout(&mut self, timeout_ms: Option<u32>) {
            self.timeout_ms = timeout_ms.unwrap_or(u32::MAX);
        }

        /// The socket's readiness now: [`READABLE`] (data, end of stream or an error to
        /// report), [`WRITABLE`], [`CONNECTED`]; an error if the connection failed.
        pub fn poll(&self) -> Result<u32, Error> {
            let mut reply = [0u8; 16];
            request(self.service, op::POLL, self.socket, &[], &mut reply).map(|(bits, _)| bits)
        }

        /// Waits until any bit of `interest` is ready (or the timeout), asleep in the
        /// kernel until the service says a socket of this app changed.
        pub fn wait(&self, interest: u32) -> Result<u32, Error> {
            wait_for(self.service, self.socket, interest, now(), self.timeout_ms)
        }

        /// Sends some of `data`, waiting for room; returns how much was taken (≥ 1 unless
        /// `data` is empty).
        pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
            if data.is_empty() {
                return Ok(0);
            }
            let chunk = &data[..data.len().min(PAYLOAD_MAX - REQUEST_HEADER)];
            let mut reply = [0u8; 16];
            let start = now();
            loop {
                let (taken, _) = request(self.service, op::SEND, self.socket, chunk, &mut reply)?;
                if taken > 0 {
                    return Ok(taken as usize);
                }
                wait_for(self.service, self.socket, WRITABLE, start, self.timeout_ms)?;
            }
        }

        /// Sends all of `data`.
        pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), Error> {
            while !data.is_empty() {
                let n = self.write(data)?;
                data = &data[n..];
            }
            Ok(())
        }

        /// Reads into `buffer`, waiting for data; returns the length, 0 at the end of the
        /// stream.
        pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
            let start = now();
            loop {
                match self.try_read(buffer) {
                    Err(Error::WouldBlock) => {}
                    other => return other,
                }
                wait_for(self.service, self.socket, READABLE, start, self.timeout_ms)?;
            }
        }

        /// Reads what is there without waiting: `EAGAIN` when nothing is.
        pub fn try_read(&mut self, buffer: &mut [u8]) -> Result<usize, Error> {
            if buffer.is_empty() {
                return Ok(0);
            }
            let max = buffer.len().min(PAYLOAD_MAX) as u16;
            let mut reply = [0u8; MESSAGE_MAX];
            let (n, got) = request(self.service, op::RECV, self.socket, &max.to_le_bytes(), &mut reply)?;
            let n = (n as usize).min(got).min(buffer.len());
            buffer[..n].copy_from_slice(&reply[STATUS_LEN..STATUS_LEN + n]);
            Ok(n)
        }

        /// Reads until `buffer` is full; `ECONNRESET` if the stream ends first.
        pub fn read_exact(&mut self, mut buffer: &mut [u8]) -> Result<(), Error> {
            while !buffer.is_empty() {
                match self.read(buffer)? {
                    0 => return Err(Error::ConnectionReset),
                    n => buffer = &mut buffer[n..],
                }
            }
            Ok(())
        }

        /// The socket behind an accepted connection.
        fn accepted(service: Handle, socket: u8, timeout_ms: u32) -> TcpStream {
            TcpStream { service, socket, timeout_ms, closed: false }
        }

        /// Closes the connection (sends what is queued, then FIN) and frees the socket.
        pub fn close(mut self) -> Result<(), Error> {
            self.closed = true;
            let mut reply = [0u8; 16];
            request(self.service, op::CLOSE, self.socket, &[], &mut reply).map(drop)
        }
    }

    impl Drop for TcpStream {
        fn drop(&mut self) {
            if !self.closed {
                let mut reply = [0u8; 16];
                let _ = request(self.service, op::CLOSE, self.socket, &[], &mut reply);
            }
        }
    }

    /// A listening socket on one port of the device. It holds one connection at a time
    /// until it is accepted (a backlog of one): while one waits, further connection
    /// attempts to the port are reset.
    pub struct TcpListener {
        service: Handle,
        socket: u8,
        timeout_ms: u32,
    }

    impl TcpListener {
        /// Listens on `port`, which the app's manifest must name (`listen = [port]`):
        /// `EACCES` otherwise.
        pub fn bind(port: u16) -> Result<TcpListener, Error> {
            let service = service()?;
            let mut reply = [0u8; 16];
            let (socket, _) = request(service, op::LISTEN, 0, &port.to_le_bytes(), &mut reply)?;
            Ok(TcpListener { service, socket: socket as u8, timeout_ms: u32::MAX })
        }

        /// Sets how long [`TcpListener::accept`] waits (`None`, the default: without a
        /// bound); the accepted streams get the default timeout of [`TcpStream`].
        pub fn set_timeout(&mut self, timeout_ms: Option<u32>) {
            self.timeout_ms = timeout_ms.unwrap_or(u32::MAX);
        }

        /// Waits for a connection and returns it, established.
        pub fn accept(&self) -> Result<TcpStream, Error> {
            let start = now();
            loop {
                match self.try_accept() {
                    Err(Error::WouldBlock) => {}
                    other => return other,
                }
                wait_for(self.service, self.socket, READABLE, start, self.timeout_ms)?;
            }
        }

        /// The waiting connection, if there is one: `EAGAIN` when none is.
        pub fn try_accept(&self) -> Result<TcpStream, Error> {
            let mut reply = [0u8; 16];
            let (socket, _) = request(self.service, op::ACCEPT, self.socket, &[], &mut reply)?;
            Ok(TcpStream::accepted(self.service, socket as u8, DEFAULT_TIMEOUT_MS))
        }
    }

    impl Drop for TcpListener {
        fn drop(&mut self) {
            let mut reply = [0u8; 16];
            let _ = request(self.service, op::CLOSE, self.socket, &[], &mut reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_a_status_or_an_error() {
        let mut reply = [0u8; 8];
        let n = put_status(&mut reply, Ok(3));
        assert_eq!(parse_reply(&reply[..n + 2]), Ok((3, &[0u8, 0][..])));
        put_status(&mut reply, Err(Error::ConnectionRefused));
        assert_eq!(parse_reply(&reply), Err(Error::ConnectionRefused));
        assert_eq!(parse_reply(&reply[..3]), Err(Error::Invalid));
        reply[..4].copy_from_slice(&(-999i32).to_le_bytes());
        assert_eq!(parse_reply(&reply), Err(Error::Io), "unknown codes are EIO");
    }
}
