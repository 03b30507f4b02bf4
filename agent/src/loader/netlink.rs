//! XDP attachments through rtnetlink: what an interface has attached (program id and mode),
//! and attaching, replacing or removing a program where the kernel gives no bpf_link (aya
//! falls back to netlink then, and its netlink handle cannot be rebuilt by a later process).
//! A replacement names the program it expects to find (`XDP_FLAGS_REPLACE` with
//! `IFLA_XDP_EXPECTED_FD`), so it is atomic and never removes someone else's program.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::AttachMode;

const NETLINK_ROUTE: i32 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
const XDP_FLAGS_REPLACE: u32 = 16;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// What an interface has attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The program's id.
    pub prog_id: u32,
    /// Native or SKB; `None` for hardware offload or several programs at once.
    pub mode: Option<AttachMode>,
}

fn mode_flag(mode: AttachMode) -> u32 {
    match mode {
        AttachMode::Skb => XDP_FLAGS_SKB_MODE,
        AttachMode::Native => XDP_FLAGS_DRV_MODE,
        AttachMode::Auto => 0,
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

/// A request: header, ifinfomsg for `ifindex`, then `attrs`.
fn request(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + IFINFOMSG + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    buf.extend_from_slice(&[0, 0]); // family AF_UNSPEC, padding
    buf.extend_from_slice(&0u16.to_ne_bytes()); // device type
    buf.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // flags
    buf.extend_from_slice(&0u32.to_ne_bytes()); // change mask
    buf.extend_from_slice(attrs);
    buf
}

/// Sends one request and returns the kernel's answer (one datagram).
fn exchange(req: &[u8]) -> io::Result<Vec<u8>> {
    exchange_within(req, None)
}

/// [`exchange`], waiting at most `timeout` for the answer (an error past it).
fn exchange_within(req: &[u8], timeout: Option<std::time::Duration>) -> io::Result<Vec<u8>> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(t) = timeout {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: a valid timeval of the size given, on a descriptor we own.
        let set = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: sockaddr_nl is plain data; zero is a valid value (the kernel as peer).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: a valid buffer and address for the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: receives into a buffer we own, bounded by its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink answer: {what}"),
    )
}

/// The first message of an answer: its type and payload. An error message becomes the error
/// it carries (an acknowledgement, error 0, is `Ok` with type [`NLMSG_ERROR`]).
fn first_message(answer: &[u8]) -> io::Result<(u16, &[u8])> {
    let len = u32_at(answer, 0).ok_or_else(|| malformed("short header"))? as usize;
    let kind = u16_at(answer, 4).ok_or_else(|| malformed("short header"))?;
    let body = answer
        .get(NLMSG_HDR..len)
        .ok_or_else(|| malformed("length beyond the datagram"))?;
    if kind == NLMSG_ERROR {
        let code = u32_at(body, 0).ok_or_else(|| malformed("short error"))? as i32;
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok((kind, body))
}

/// The attributes of `b`, as (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        let payload = b.get(4..len)?;
        b = b.get(align4(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// What interface `ifindex` has attached, if anything.
pub fn query(ifindex: u32) -> io::Result<Option<Attached>> {
    query_within(ifindex, None)
}

/// [`query`], waiting at most `timeout` for the kernel's answer: the agent's reader asks
/// every sweep, and must not wait long on a kernel busy with its network configuration.
pub fn query_within(
    ifindex: u32,
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<Attached>> {
    let answer = exchange_within(&request(RTM_GETLINK, NLM_F_REQUEST, ifindex, &[]), timeout)?;
    let (kind, body) = first_message(&answer)?;
    if kind != RTM_NEWLINK {
        return Err(malformed("no link message"));
    }
    let link_attrs = body
        .get(IFINFOMSG..)
        .ok_or_else(|| malformed("short link message"))?;
    let Some((_, xdp)) = attrs(link_attrs).find(|&(k, _)| k == IFLA_XDP) else {
        return Ok(None);
    };
    let mut attached = 0u8;
    let mut prog_id = 0u32;
    for (k, v) in attrs(xdp) {
        match k {
            IFLA_XDP_ATTACHED => attached = v.first().copied().unwrap_or(0),
            IFLA_XDP_PROG_ID => prog_id = u32_at(v, 0).unwrap_or(0),
            _ => {}
        }
    }
    if attached == 0 {
        return Ok(None);
    }
    let mode = match attached {
        XDP_ATTACHED_DRV => Some(AttachMode::Native),
        XDP_ATTACHED_SKB => Some(AttachMode::Skb),
        _ => None,
    };
    Ok(Some(Attached { prog_id, mode }))
}

/// Sets the XDP program of `ifindex` to `prog` (`None`: none) in `mode`. With `expected`,
/// only when that program is the one attached now (atomic replace or removal); without it,
/// only when none is attached.
pub fn set(
    ifindex: u32,
    prog: Option<BorrowedFd<'_>>,
    expected: Option<BorrowedFd<'_>>,
    mode: AttachMode,
) -> io::Result<()> {
    let fd = prog.map_or(-1, |p| p.as_raw_fd());
    let mut flags = mode_flag(mode);
    let mut nested = Vec::new();
    push_attr(&mut nested, IFLA_XDP_FD, &fd.to_ne_bytes());
    match expected {
        Some(old) => {
            flags |= XDP_FLAGS_REPLACE;
            push_attr(
                &mut nested,
                IFLA_XDP_EXPECTED_FD,
                &old.as_raw_fd().to_ne_bytes(),
            );
        }
        None => flags |= XDP_FLAGS_UPDATE_IF_NOEXIST,
    }
    push_attr(&mut nested, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut attrs = Vec::new();
    push_attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &nested);
    let answer = exchange(&request(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        ifindex,
        &attrs,
    ))?;
    first_message(&answer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_within_their_bounds() {
        let mut b = Vec::new();
        push_attr(&mut b, IFLA_XDP_ATTACHED, &[2]);
        push_attr(&mut b, IFLA_XDP_PROG_ID, &77u32.to_ne_bytes());
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(
            got,
            [
                (IFLA_XDP_ATTACHED, vec![2]),
                (IFLA_XDP_PROG_ID, 77u32.to_ne_bytes().to_vec())
            ]
        );
        // A length past the end stops the walk instead of reading beyond it.
        let mut cut = b.clone();
        cut[0] = 200;
        assert_eq!(attrs(&cut).count(), 0);
        assert_eq!(attrs(&b[..3]).count(), 0);
    }

    #[test]
    fn an_error_answer_becomes_its_errno_and_garbage_an_error() {
        let mut ans = Vec::new();
        ans.extend_from_slice(&20u32.to_ne_bytes());
        ans.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ans.extend_from_slice(&[0; 10]);
        ans.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        let e = first_message(&ans).expect_err("EBUSY");
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        assert!(first_message(&ans[..10]).is_err());
        let mut long = ans.clone();
        long[0] = 99;
        assert!(first_message(&long).is_err());
    }
}
