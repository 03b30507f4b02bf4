//! An error's text with its causes, for what is kept and shown later (a refusal in `status`,
//! a shipping failure): the outermost text alone often leaves out what failed underneath.

/// `e`'s text and each cause's after it, `: `-joined (as anyhow's `{:#}`); a cause whose text
/// the line already holds (a wrapper that prints its source too) is not repeated.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    for c in std::iter::successors(e.source(), |c| c.source()) {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrap(String, #[source] std::io::Error);

    #[test]
    fn causes_follow_the_text_once() {
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let e = Wrap("PUT k: error sending request".into(), refused);
        assert_eq!(
            with_causes(&e),
            "PUT k: error sending request: Connection refused (os error 111)"
        );
        let said = std::io::Error::other("timed out");
        let e = Wrap("PUT k: timed out".into(), said);
        assert_eq!(with_causes(&e), "PUT k: timed out");
    }
}
