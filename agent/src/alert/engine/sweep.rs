//! What each sweep finds holding, kept as alerts while it holds: interfaces not audited,
//! list files left rejected.

use super::{AlertId, Engine, Now, SubjectRef};
use crate::alert::Alert;
use crate::status::Unaudited;

impl Engine {
    /// The configured interfaces a sweep found not audited: each is one alert while it
    /// stays so, resolved once audited again (by the next agent, which carries it, as the
    /// stop that mends it is a restart).
    pub fn unaudited(&mut self, list: &[Unaudited], now: impl Into<Now>, out: &mut Vec<Alert>) {
        let now = now.into();
        for u in list {
            let subject = SubjectRef {
                interface: Some(&u.name),
                ..SubjectRef::default()
            };
            let text = || format!("interface {} is not audited: {}", u.name, u.reason);
            let w = self.window_ns;
            self.touch(AlertId::IfaceUnaudited, subject, text, 1, w, now, out);
        }
    }

    /// The list files whose last reload was rejected for a problem in them (and the
    /// subscribers and lease files refused at their last read), each with it:
    /// the alert each one's reload raised stays active while the file stays bad (nothing
    /// reads it again until it changes), raised again should it have resolved meanwhile (a
    /// window shorter than a sweep, sweeps lost to a full queue), is resolved and raised
    /// anew when the file's problem is another than it names, and resolves a window after the
    /// file loads.
    pub fn lists_rejected(
        &mut self,
        files: &[(String, String)],
        now: impl Into<Now>,
        out: &mut Vec<Alert>,
    ) {
        let now = now.into();
        for (f, problem) in files {
            let subject = SubjectRef {
                file: Some(f),
                ..SubjectRef::default()
            };
            // Another problem than the active alert names (one carried from the last agent,
            // say, while the file went bad otherwise meanwhile): resolved, and this one raised.
            let stale = |a: &Alert| !a.text.ends_with(problem.as_str());
            self.resolve_if(AlertId::ListRejected, subject, stale, out);
            if !self.bump(AlertId::ListRejected, subject, 0, now) {
                let text = || format!("file rejected, still as last read: {problem}");
                let w = self.window_ns;
                self.touch(AlertId::ListRejected, subject, text, 1, w, now, out);
            }
        }
    }
}
