//! `septa relay 127.0.0.1:PORT`: the host end of one guest connection.
//!
//! QEMU's user network starts this once per guest connection to a named forward
//! (`guestfwd=tcp:10.0.2.100:P-cmd:septa relay 127.0.0.1:PORT`), with the guest's byte
//! stream on standard input and output. The relay connects to a server on the host's
//! loopback and copies both ways until either side ends. It refuses any address that is not
//! loopback, so a forward can never lead off the machine.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

/// Parses the target and refuses anything but a loopback address.
pub fn target(text: &str) -> Result<SocketAddr> {
    let address: SocketAddr = text.parse().with_context(|| format!("{text:?}: expected IP:PORT"))?;
    if !address.ip().is_loopback() {
        bail!("{address}: the relay only connects to loopback addresses");
    }
    Ok(address)
}

/// Connects to `address` and copies standard input to it and its answers to standard
/// output, until either side closes.
pub fn run(address: SocketAddr) -> Result<()> {
    let server = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    server.set_nodelay(true)?;
    let mut to_server = server.try_clone()?;
    let upstream = std::thread::spawn(move || {
        let _ = copy(&mut std::io::stdin().lock(), &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut from_server = server;
    let _ = copy(&mut from_server, &mut std::io::stdout().lock());
    // The server is done: end the guest's connection too (QEMU sees the relay exit).
    drop(upstream);
    Ok(())
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n])?;
        to.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(target("127.0.0.1:7").is_ok());
        assert!(target("[::1]:7").is_ok());
        assert!(format!("{:#}", target("10.0.2.2:7").unwrap_err()).contains("only connects to loopback"));
        assert!(format!("{:#}", target("192.168.1.1:80").unwrap_err()).contains("only connects to loopback"));
        assert!(target("localhost").is_err());
    }
}
