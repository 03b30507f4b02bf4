//! The two ctnetlink sockets: one subscribed to new and destroy events, with a receive buffer
//! sized for bursts, and one that dumps the table on request.

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::NatError;

/// `NFNLGRP_CONNTRACK_NEW`: new entries (sent when the entry is confirmed, after NAT chose
/// the outside tuple).
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
/// `NFNLGRP_CONNTRACK_DESTROY`: destroyed entries, with final counters and stop time.
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// Receive buffer for one datagram: a dump reply is at most 32 KiB, an event much less.
pub(crate) const DATAGRAM_MAX: usize = 64 * 1024;

/// One receive.
pub(crate) enum Recv {
    /// A datagram of this many bytes is in the buffer.
    Data(usize),
    /// A datagram larger than the buffer was cut (never expected from ctnetlink).
    Truncated(usize),
    /// Nothing queued.
    Empty,
    /// The kernel dropped messages because the receive queue was full (ENOBUFS).
    Overrun,
    /// A datagram from a sender other than the kernel (its netlink port id), dropped unread.
    Foreign(u32),
}

/// A netlink socket of the netfilter family.
pub(crate) struct CtSocket {
    sock: Socket,
}

fn sock_err(what: &'static str) -> impl FnOnce(io::Error) -> NatError {
    move |source| NatError::Socket { what, source }
}

impl CtSocket {
    /// The event socket, subscribed to new and destroy events; its receive buffer is set to
    /// `rcvbuf` bytes with `SO_RCVBUFFORCE` (root), or as far as `rmem_max` allows with
    /// `SO_RCVBUF` otherwise. Returns the socket and the buffer the kernel granted.
    pub(crate) fn events(rcvbuf: usize) -> Result<(Self, usize), NatError> {
        let mut sock =
            Socket::new(NETLINK_NETFILTER).map_err(sock_err("socket(NETLINK_NETFILTER)"))?;
        sock.bind(&SocketAddr::new(0, 0))
            .map_err(sock_err("bind"))?;
        let this = Self { sock };
        this.set_rcvbuf(rcvbuf)?;
        for (group, name) in [
            (NFNLGRP_CONNTRACK_NEW, "NFNLGRP_CONNTRACK_NEW"),
            (NFNLGRP_CONNTRACK_DESTROY, "NFNLGRP_CONNTRACK_DESTROY"),
        ] {
            this.sock
                .add_membership(group)
                .map_err(|source| NatError::Subscribe {
                    group: name,
                    source,
                })?;
        }
        let granted = this
            .sock
            .get_rx_buf_sz()
            .map_err(sock_err("getsockopt(SO_RCVBUF)"))?;
        Ok((this, granted))
    }

    /// The dump socket.
    pub(crate) fn dumper() -> Result<Self, NatError> {
        let mut sock =
            Socket::new(NETLINK_NETFILTER).map_err(sock_err("socket(NETLINK_NETFILTER)"))?;
        sock.bind_auto().map_err(sock_err("bind"))?;
        Ok(Self { sock })
    }

    fn set_rcvbuf(&self, bytes: usize) -> Result<(), NatError> {
        let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&val as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        tracing::warn!(
            error = %io::Error::last_os_error(),
            "SO_RCVBUFFORCE refused (no CAP_NET_ADMIN?): the conntrack event buffer is capped by net.core.rmem_max"
        );
        self.sock
            .set_rx_buf_sz(val)
            .map_err(sock_err("setsockopt(SO_RCVBUF)"))
    }

    /// Waits up to `timeout_ms` for a datagram; true if one is ready.
    pub(crate) fn wait(&self, timeout_ms: i32) -> Result<bool, NatError> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(NatError::Socket {
                what: "poll",
                source: e,
            });
        }
        Ok(rc > 0)
    }

    /// Receives one datagram into `buf` without blocking ([`Self::wait`] first). Only the
    /// kernel (port id 0) speaks for conntrack: a datagram from another sender (a process
    /// with CAP_NET_ADMIN can send to this socket) is [`Recv::Foreign`], not to be read.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result<Recv, NatError> {
        let flags = libc::MSG_TRUNC | libc::MSG_DONTWAIT;
        let cap = buf.len();
        match self.sock.recv_from(&mut &mut buf[..], flags) {
            Ok((_, from)) if from.port_number() != 0 => Ok(Recv::Foreign(from.port_number())),
            Ok((n, _)) if n > cap => Ok(Recv::Truncated(n)),
            Ok((n, _)) => Ok(Recv::Data(n)),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Recv::Overrun),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Recv::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Recv::Empty),
            Err(source) => Err(NatError::Socket {
                what: "recvfrom",
                source,
            }),
        }
    }

    /// Sends a request to the kernel.
    pub(crate) fn send(&self, msg: &[u8]) -> Result<(), NatError> {
        self.sock
            .send_to(msg, &SocketAddr::new(0, 0), 0)
            .map(|_| ())
            .map_err(sock_err("send"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::nat::parse::dump_request;

    /// Only the kernel (port id 0) speaks for conntrack: a datagram another socket sends to
    /// the dump socket (here a forged refusal of the dump) is dropped unread. Sending to
    /// another socket of this family takes CAP_NET_ADMIN, as it would for an attacker: run
    /// as root (cargo xtask test does).
    #[test]
    fn a_datagram_not_from_the_kernel_is_dropped_unread() {
        let dumper = CtSocket::dumper().expect("dump socket");
        let mut to = SocketAddr::new(0, 0);
        dumper
            .sock
            .get_address(&mut to)
            .expect("the dump socket's address");
        let mut other = Socket::new(NETLINK_NETFILTER).expect("another socket");
        other.bind_auto().expect("bind");
        let mut from = SocketAddr::new(0, 0);
        other.get_address(&mut from).expect("its address");
        let mut forged = Vec::new();
        forged.extend_from_slice(&36u32.to_ne_bytes());
        forged.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        forged.extend_from_slice(&[0; 10]);
        forged.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        forged.extend_from_slice(&[0; 16]);
        other.send_to(&forged, &to, 0).unwrap_or_else(|e| {
            panic!("send to the dump socket: {e} (needs CAP_NET_ADMIN: run as root)")
        });
        let mut buf = vec![0; DATAGRAM_MAX];
        assert!(dumper.wait(2000).expect("poll"), "the datagram arrives");
        match dumper.recv(&mut buf).expect("recv") {
            Recv::Foreign(pid) => assert_eq!(pid, from.port_number()),
            Recv::Data(n) => panic!(
                "{n} bytes from port {} taken as the kernel's",
                from.port_number()
            ),
            _ => panic!("no datagram"),
        }
        // The kernel's answer to a request (entries, or an error if conntrack is not loaded)
        // is taken.
        dumper
            .send(&dump_request(1, libc::AF_UNSPEC as u8))
            .expect("send");
        assert!(dumper.wait(2000).expect("poll"), "the kernel answers");
        assert!(matches!(dumper.recv(&mut buf), Ok(Recv::Data(_))));
    }
}
