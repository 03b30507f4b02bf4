//! `detach` (root, from the package's prerm) empties map directories on bpffs, where the
//! agent's user can make symbolic links: a link inside a map directory is removed, never
//! followed, and a link in a map directory's place is removed itself. Needs root (it mounts
//! a bpffs of its own).

use xdp_audit::loader::pin::remove_maps_dir;
use xdp_audit_lab::pins::Bpffs;

#[test]
fn links_in_or_in_place_of_a_map_directory_are_removed_never_followed() {
    let id = format!("walk-{}", std::process::id());
    let bpffs = Bpffs::mount(&id).expect("mount a bpffs");
    let victims = std::env::temp_dir().join(format!("xdp-audit-pin-walk-{id}"));
    let _ = std::fs::remove_dir_all(&victims);
    std::fs::create_dir_all(&victims).expect("victims dir");
    let victim = victims.join("keep.conf");
    std::fs::write(&victim, "x").expect("victim file");

    let inst = bpffs.path().join("gw1");
    let maps = inst.join("maps-00ff");
    std::fs::create_dir_all(&maps).expect("a map directory on bpffs");
    std::os::unix::fs::symlink(&victim, maps.join("flows")).expect("a link inside");
    let in_place = inst.join("maps-abcd");
    std::os::unix::fs::symlink(&victims, &in_place).expect("a link in a map directory's place");

    let emptied = remove_maps_dir(&maps);
    let unlinked = remove_maps_dir(&in_place);
    let kept = victim.exists();
    let _ = std::fs::remove_dir_all(&victims);
    emptied.expect("the map directory emptied and removed");
    unlinked.expect("the link in its place removed");
    assert!(kept, "the file a link inside named is kept");
    assert!(!maps.exists(), "the map directory is gone");
    assert!(
        std::fs::symlink_metadata(&in_place).is_err(),
        "the link in a map directory's place is gone"
    );
}
