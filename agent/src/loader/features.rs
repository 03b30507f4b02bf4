//! Device features that change what XDP sees of a frame, read with the ethtool ioctl (on an
//! AF_UNIX socket: the kernel hands any socket's unknown ioctl to the device layer, and the
//! agent keeps no IP socket). Said at attach, never changed: the operator decides.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tracing::{info, warn};

use super::{AttachMode, LoadError};

/// `ETHTOOL_GFLAGS`: the legacy flags word, a stable ABI for the bits below.
const ETHTOOL_GFLAGS: u32 = 0x25;
/// `ETHTOOL_GDRVINFO`: the driver's name.
const ETHTOOL_GDRVINFO: u32 = 0x03;
/// `ETH_FLAG_RXVLAN`: the device strips 802.1Q tags into packet metadata on receive.
const ETH_FLAG_RXVLAN: u32 = 1 << 8;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    // `struct ifreq`'s union is 24 bytes on 64-bit Linux; the pointer is its first member.
    _pad: [u8; 16],
}

/// One `SIOCETHTOOL` call with `cmd` (a struct whose first field is the command).
fn ethtool<T>(sock: &OwnedFd, iface: &str, cmd: &mut T) -> io::Result<()> {
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data: (cmd as *mut T).cast(),
        _pad: [0; 16],
    };
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    req.name[..name.len()].copy_from_slice(name);
    // SAFETY: `req` is a valid ifreq whose data points to `cmd`, alive for the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `iface` strips VLAN tags on receive, and its driver's name.
fn vlan_stripping(iface: &str) -> io::Result<(bool, String)> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut flags = EthtoolValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    ethtool(&sock, iface, &mut flags)?;
    // SAFETY: all-zero is a valid EthtoolDrvinfo (integers and byte arrays).
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let driver = match ethtool(&sock, iface, &mut info) {
        Ok(()) => {
            let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
            String::from_utf8_lossy(&info.driver[..end]).into_owned()
        }
        Err(_) => String::new(),
    };
    Ok((flags.data & ETH_FLAG_RXVLAN != 0, driver))
}

/// Whether `iface` is a bond (`IFF_MASTER`, read with `SIOCGIFFLAGS`); `false` if unreadable.
fn is_bond(iface: &str) -> bool {
    let name = iface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return false;
    }
    // SAFETY: plain socket(2) and ioctl(2) on a zeroed ifreq holding a NUL-terminated name;
    // the descriptor is owned, so closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let sock = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(name) {
            *d = *s as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return false;
        }
        req.ifr_ifru.ifru_flags as libc::c_int & libc::IFF_MASTER != 0
    }
}

/// The mode `iface` is attached in. Native XDP on a bond is installed on its member links:
/// the program would see their interface indexes, not the bond's, so a `bond0:wan` would be
/// judged as a LAN side and its flows split at a failover. SKB mode runs on the bond itself.
pub(crate) fn attach_mode(iface: &str, mode: AttachMode) -> Result<AttachMode, LoadError> {
    attach_mode_of(iface, is_bond(iface), mode)
}

fn attach_mode_of(iface: &str, bond: bool, mode: AttachMode) -> Result<AttachMode, LoadError> {
    match (bond, mode) {
        (false, m) => Ok(m),
        (true, AttachMode::Native) => Err(LoadError::BondNative(iface.into())),
        (true, AttachMode::Auto) => {
            info!(
                iface,
                "a bond: attaching in SKB mode (native XDP would run on its member links, \
                 under their interface indexes)"
            );
            Ok(AttachMode::Skb)
        }
        (true, AttachMode::Skb) => Ok(AttachMode::Skb),
    }
}

/// Warns when `iface` hands XDP its frames without their VLAN tags: the records of tagged
/// traffic then say `vlan: null`, count 4 bytes less per frame than a capture, and merge
/// flows of different VLANs with the same addresses. A veth never strips on receive (its
/// flag is meaningless for XDP): what it can lose is a tag its peer sent out of band, which
/// only the peer's `tx-vlan-offload` decides, and which the README describes.
pub(crate) fn warn_vlan_stripping(iface: &str) {
    match vlan_stripping(iface) {
        Ok((true, driver)) if driver != "veth" => warn!(
            iface,
            driver,
            "the device strips VLAN tags before XDP sees the frame (rx-vlan-offload on): \
             tagged traffic is recorded without its vlan, 4 bytes short per frame, \
             flows of different VLANs with the same addresses merge, and a refusal's \
             answer (--refuse, FILE:refuse) to a tagged packet leaves untagged, on another \
             VLAN; turn it off with `ethtool -K {iface} rxvlan off` where VLANs cross this \
             interface"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(iface, error = %e, "cannot read the device's offload flags"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_structs_have_the_kernels_sizes() {
        assert_eq!(size_of::<EthtoolValue>(), 8);
        assert_eq!(size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(size_of::<Ifreq>(), 40);
    }

    #[test]
    fn a_bond_is_attached_in_skb_mode_and_refused_native() {
        assert!(!is_bond("lo") && !is_bond("no-such-if0"));
        assert_eq!(
            attach_mode("lo", AttachMode::Auto).ok(),
            Some(AttachMode::Auto)
        );
        assert_eq!(
            attach_mode_of("bond0", true, AttachMode::Auto).ok(),
            Some(AttachMode::Skb)
        );
        assert_eq!(
            attach_mode_of("bond0", true, AttachMode::Skb).ok(),
            Some(AttachMode::Skb)
        );
        let e = attach_mode_of("bond0", true, AttachMode::Native).map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("bond0") && e.contains("--xdp-mode skb")),
            "{e:?}"
        );
    }

    #[test]
    fn loopback_reads_and_strips_nothing() {
        let (strips, driver) = vlan_stripping("lo").expect("ethtool flags of lo");
        assert!(!strips, "lo strips no VLAN tags");
        assert_ne!(driver, "veth");
        assert!(vlan_stripping("no-such-if0").is_err());
    }
}
