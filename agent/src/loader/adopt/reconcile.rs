//! Bringing a start's attachments to its configuration: interfaces kept, swapped, taken
//! over, attached, re-attached or detached ([`reconcile`]).

use aya::programs::Xdp;
use tracing::{info, warn};

use super::*;

/// Brings the attachments to what `spec` asks: each interface keeps the running program (or
/// gets `new` swapped in on its link at once), an interface new to the instance is attached,
/// one gone from the configuration detached, one whose attachment vanished (the interface
/// was re-created) attached again, one whose mode must change detached and attached.
pub(in crate::loader) fn reconcile(
    spec: &Spec,
    state: &PinState,
    running: &mut Xdp,
    mut new: Option<&mut Xdp>,
) -> Result<Vec<PinnedIface>, StartError> {
    let running_id = prog_id(running)?;
    let mut out = Vec::new();
    // Noted interfaces whose attachment a configured one took over (it was renamed).
    let mut renamed: Vec<&str> = Vec::new();
    for t in &spec.interfaces {
        let listed = state.interfaces.iter().find(|i| i.name == t.name);
        let attached = query(t)?;
        // The program a swap that died half-way left on this interface: it is replaced like
        // the running one.
        let mut stale = None;
        if let Some(a) = attached.filter(|a| a.prog_id != running_id) {
            let new_id = new.as_deref().and_then(|n| prog_id(n).ok());
            if new_id != Some(a.prog_id) {
                let Some(old) = recover::replaced_program(spec, a.prog_id) else {
                    // Another tool's program: this interface is left to it, and the caller,
                    // finding it missing from the attachments, reports it; the others go on.
                    // A link pin of ours there holds no attachment (a live link would have
                    // kept the other program out), only the old program alive.
                    let dead = spec.pins.link(&t.name);
                    if dead.exists() {
                        remove_file(&dead)?;
                    }
                    warn!(iface = t.name, "{}", LoadError::Busy(t.name.clone()));
                    continue;
                };
                stale = Some(old);
            }
        }
        // An interface not noted beside the pins that runs one of this instance's programs
        // (any other was refused as busy above) is taken over as a noted one, else every
        // start would find it busy until `detach`: one renamed since (a noted interface of
        // its index that is no longer configured: its link pin takes the new name), or one an
        // earlier start attached (the link pinned, or through netlink) and was killed before
        // noting.
        let unlisted = match (listed, attached) {
            (None, Some(a)) => {
                let was = state.interfaces.iter().find(|o| {
                    o.ifindex == t.ifindex && !spec.interfaces.iter().any(|c| c.name == o.name)
                });
                if let Some(o) = was.filter(|o| o.link) {
                    info!(
                        iface = t.name,
                        was = o.name,
                        "renamed: its link pin follows"
                    );
                    pin::rename(&spec.pins.link(&o.name), &spec.pins.link(&t.name))?;
                }
                if let Some(o) = was {
                    renamed.push(&o.name);
                }
                Some(PinnedIface {
                    name: t.name.clone(),
                    ifindex: t.ifindex,
                    mode: a.mode.unwrap_or(spec.mode),
                    link: spec.pins.link(&t.name).exists(),
                })
            }
            (None, None) => {
                // A link pin of this name holds no attachment here (a start killed after
                // pinning it, the interface re-created since): attaching pins anew.
                let stale = spec.pins.link(&t.name);
                if stale.exists() {
                    remove_file(&stale)?;
                }
                None
            }
            _ => None,
        };
        let old = listed.or(unlisted.as_ref());
        // As a fresh attach would: a bond's native attachment (an earlier build's) is
        // changed to SKB mode, and native is refused there.
        let wanted = match crate::loader::features::attach_mode(&t.name, spec.mode) {
            Ok(m) => m,
            Err(e) if e.is_one_interface() => {
                warn!(iface = t.name, "{e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let iface = match (old, attached) {
            (Some(o), Some(a)) if o.ifindex == t.ifindex && mode_fits(wanted, a.mode) => {
                match (new.as_deref_mut(), &stale) {
                    (Some(n), Some(old)) => swap(spec, o, t, program_fd(old)?, n)?,
                    (Some(n), None) => swap(spec, o, t, program_fd(running)?, n)?,
                    (None, Some(old)) => swap(spec, o, t, program_fd(old)?, running)?,
                    (None, None) => {}
                }
                PinnedIface {
                    mode: a.mode.unwrap_or(o.mode),
                    ..o.clone()
                }
            }
            (Some(o), Some(a)) if o.ifindex == t.ifindex => {
                warn!(
                    iface = t.name,
                    from = ?a.mode,
                    to = %spec.mode,
                    "a change of XDP mode cannot be made without a moment with no program: \
                     detaching, then attaching; packets in between pass unjudged"
                );
                remove_attachment(&spec.pins, o, t.ifindex, stale.as_ref().unwrap_or(running))?;
                let again = wait_detached(t)
                    .and_then(|()| attach_new(pick(&mut new, running), t, spec, Some(spec.mode)));
                match one_interface(t, again)? {
                    Some(i) => i,
                    None => continue,
                }
            }
            (Some(o), _) => {
                info!(
                    iface = t.name,
                    "the pinned attachment is gone (the interface was re-created?): attaching again"
                );
                remove_attachment(&spec.pins, o, o.ifindex, stale.as_ref().unwrap_or(running))?;
                let again = wait_detached(t)
                    .and_then(|()| attach_new(pick(&mut new, running), t, spec, None));
                match one_interface(t, again)? {
                    Some(i) => i,
                    None => continue,
                }
            }
            (None, _) => {
                match one_interface(t, attach_new(pick(&mut new, running), t, spec, None))? {
                    Some(i) => i,
                    None => continue,
                }
            }
        };
        out.push(iface);
    }
    for o in &state.interfaces {
        if !spec.interfaces.iter().any(|t| t.name == o.name) && !renamed.contains(&o.name.as_str())
        {
            let now = crate::loader::ifindex(&o.name);
            if now.is_some() {
                info!(iface = o.name, "no longer configured: detaching");
            } else {
                info!(iface = o.name, "gone: its pinned attachment is removed");
            }
            let ifindex = now.unwrap_or(o.ifindex);
            // It may still run the program an interrupted swap replaced.
            let stale = netlink::query(ifindex)
                .ok()
                .flatten()
                .filter(|a| a.prog_id != running_id)
                .and_then(|a| recover::replaced_program(spec, a.prog_id));
            remove_attachment(&spec.pins, o, ifindex, stale.as_ref().unwrap_or(running))?;
        }
    }
    // The link of an interface a killed start attached before noting it, and no longer
    // configured: removing the pin detaches it.
    for path in spec.pins.contents()? {
        let configured = spec
            .interfaces
            .iter()
            .any(|t| spec.pins.link(&t.name) == path);
        if pin::is_link_pin(&path) && !configured {
            info!(pin = %path.display(), "a link no start noted, for an interface no longer configured: detaching");
            remove_file(&path)?;
        }
    }
    Ok(out)
}

/// An attachment, or `None` when only this interface refused it (another program holds it,
/// its driver refuses the mode: said here; the caller reports it and audits the others).
fn one_interface(
    t: &Target,
    r: Result<PinnedIface, StartError>,
) -> Result<Option<PinnedIface>, StartError> {
    match r {
        Ok(i) => Ok(Some(i)),
        Err(StartError::Load(e)) if e.is_one_interface() => {
            warn!(iface = t.name, "{e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
