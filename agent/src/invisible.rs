//! Invisible characters: the one test of a character that shows nothing of itself, or acts
//! on the text around it, and the one form such a character is shown in.
//!
//! Controls (a newline, ESC), format characters (bidi overrides and isolates, zero-width
//! spaces and joiners, the BOM, the soft hyphen), line and paragraph separators and the other
//! default-ignorable code points (Hangul fillers, variation selectors, tags) make a text read
//! as another one (`admin\u{202e}gpj.exe` shows as `adminexe.jpg`), hide part of it, start a
//! row of their own or drive a terminal. So the inputs that name people and hosts refuse them
//! ([`find`]: DHCP host names, list domains; subscribers files with [`find_deceptive`], which
//! lets ordinary writing's joiners and variation selectors through), and every display of free
//! text to people (tables, messages, HTML and Markdown reports, `status`) writes them as
//! [`escape`] does: `\u{202e}` (`\n`, `\r`, `\t` for those three), and a backslash that would
//! read as the start of one doubled ([`shown_chars`]). The machine formats (JSON Lines,
//! syslog, webhooks) carry the exact text.
//!
//! A hand-written table rather than a Unicode crate: the set is small and changes rarely
//! (Unicode 15.1: general categories Cc, Cf, Zl, Zp and `Default_Ignorable_Code_Point`).

use std::borrow::Cow;

/// Whether `c` is invisible: a control (category Cc), a format character (Cf), a line or
/// paragraph separator (Zl, Zp) or a default-ignorable code point.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}' // soft hyphen
                | '\u{034F}' // combining grapheme joiner
                | '\u{0600}'..='\u{0605}' // Arabic number signs
                | '\u{061C}' // Arabic letter mark
                | '\u{06DD}' // Arabic end of ayah
                | '\u{070F}' // Syriac abbreviation mark
                | '\u{0890}'..='\u{0891}' // Arabic pound and piastre marks above
                | '\u{08E2}' // Arabic disputed end of ayah
                | '\u{115F}'..='\u{1160}' // Hangul choseong and jungseong fillers
                | '\u{17B4}'..='\u{17B5}' // Khmer inherent vowels
                | '\u{180B}'..='\u{180F}' // Mongolian variation selectors, vowel separator
                | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
                | '\u{2028}'..='\u{202E}' // line and paragraph separators, bidi embeddings, overrides
                | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
                | '\u{3164}' // Hangul filler
                | '\u{FE00}'..='\u{FE0F}' // variation selectors
                | '\u{FEFF}' // zero-width no-break space, the BOM
                | '\u{FFA0}' // halfwidth Hangul filler
                | '\u{FFF0}'..='\u{FFFB}' // reserved, interlinear annotation
                | '\u{110BD}' // Kaithi number sign
                | '\u{110CD}' // Kaithi number sign above
                | '\u{13430}'..='\u{1343F}' // Egyptian hieroglyph format controls
                | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
                | '\u{1D173}'..='\u{1D17A}' // musical symbol format controls
                | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
        )
}

/// The first invisible character of `text`, if it holds one.
pub fn find(text: &str) -> Option<char> {
    text.chars().find(|&c| is_invisible(c))
}

/// The first invisible character of `text` that is no part of ordinary writing: a name's
/// text may hold a zero-width joiner or non-joiner (Persian and Indic spelling, emoji
/// sequences) and variation selectors (an emoji's style, Mongolian forms) right after a
/// character that is not ASCII, where they neither reorder nor hide text. After ASCII or at
/// the start (`c-20\u{200d}`, which looks like `c-20`) they are refused like the rest.
/// Displays show them escaped all the same ([`printable`]).
pub fn find_deceptive(text: &str) -> Option<char> {
    let mut after_ascii = true;
    text.chars().find(|&c| {
        let joins = matches!(
            c,
            '\u{200C}'..='\u{200D}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{180B}'..='\u{180D}'
                | '\u{180F}'
                | '\u{E0100}'..='\u{E01EF}'
        );
        let deceptive = is_invisible(c) && (!joins || after_ascii);
        after_ascii = c.is_ascii();
        deceptive
    })
}

/// How an invisible character is shown: `\u{202e}`, and `\n`, `\r`, `\t` for those three
/// (Rust's `char::escape_default`); ASCII, so it neither acts nor hides.
pub fn escape(c: char) -> std::char::EscapeDefault {
    c.escape_default()
}

/// `text` with each invisible character shown as [`escape`] writes it: a free text printed
/// in a table or a message (an account, a host name, a hold's reason, a line of a list file)
/// must not start a row of its own, drive the terminal or read as another text.
pub fn printable(text: &str) -> Cow<'_, str> {
    if find(text).is_none() && !text.contains('\\') {
        return text.into();
    }
    shown_chars(text).collect::<String>().into()
}

/// The characters of `text` as displays show it: each invisible character as its escape, and
/// a backslash that starts what reads as one (`\u`, `\n`, `\r`, `\t`, `\\`, or an escaped
/// character's own backslash) doubled, so
/// that a text spelling `\u{200b}` never shows as one holding U+200B (an
/// account `C-0042\u{200b}` typed so would pass for `C-0042` with a zero-width space). Every
/// other character as it is: `CORP\alice` shows as itself.
pub fn shown_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    let mut rest = text.chars().peekable();
    let mut pending: Option<std::char::EscapeDefault> = None;
    std::iter::from_fn(move || loop {
        if let Some(c) = pending.as_mut().and_then(Iterator::next) {
            return Some(c);
        }
        let c = rest.next()?;
        // Before an invisible character too: its escape begins with a backslash.
        let reads_as_escape = c == '\\'
            && rest
                .peek()
                .is_some_and(|&n| matches!(n, 'u' | 'n' | 'r' | 't' | '\\') || is_invisible(n));
        if is_invisible(c) || reads_as_escape {
            // `escape_default` writes a backslash as two.
            pending = Some(escape(c));
        } else {
            return Some(c);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The characters the security review named, each alone and inside a text; visible
    /// letters of other scripts, spaces and symbols are not among them.
    #[test]
    fn bidi_zero_width_fillers_and_tags_are_invisible_letters_are_not() {
        let invisible = [
            '\u{0}',
            '\n',
            '\r',
            '\t',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{ad}',
            '\u{34f}',
            '\u{61c}',
            '\u{115f}',
            '\u{1160}',
            '\u{180e}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{2069}',
            '\u{206f}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{1bca0}',
            '\u{e0000}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e0100}',
            '\u{e0fff}',
        ];
        for c in invisible {
            assert!(is_invisible(c), "{c:?}");
            assert_eq!(find(&format!("ab{c}cd")), Some(c), "{c:?}");
        }
        let visible = [
            ' ',
            'a',
            '~',
            'ü',
            'ë',
            'Ж',
            'ا',
            '网',
            '한',
            '\u{a0}',
            '\u{2010}',
            '\u{2027}',
            '\u{2030}',
            '\u{205f}',
            '\u{3000}',
            '\u{fffc}',
            '\u{fffd}',
            '🦀',
            '\u{e1000}',
        ];
        for c in visible {
            assert!(!is_invisible(c), "{c:?}");
        }
        assert_eq!(find("Zoë-ünïcode 网卡 🦀"), None);
    }

    /// Every control is invisible: the table adds to `char::is_control`, never replaces it.
    #[test]
    fn every_control_is_invisible() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            if c.is_control() {
                assert!(is_invisible(c), "{c:?}");
            }
        }
    }

    /// One shown form: an ASCII escape in place of each invisible character, the rest kept.
    #[test]
    fn invisible_characters_are_shown_as_escapes() {
        assert_eq!(printable("case 4711, \"ü\""), "case 4711, \"ü\"");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("admin\u{202e}gpj.exe\u{200b}\n\u{3164}\u{e0041}\u{1b}[2J"),
            "admin\\u{202e}gpj.exe\\u{200b}\\n\\u{3164}\\u{e0041}\\u{1b}[2J"
        );
        assert_eq!(escape('\t').to_string(), "\\t");
    }

    /// A text that spells an escape is shown apart from one holding the character: its
    /// backslash doubled. Other backslashes stay as they are.
    #[test]
    fn a_spelled_escape_is_not_shown_as_the_character() {
        let real = printable("C-0042\u{200b}");
        let spelled = printable(r"C-0042\u{200b}");
        assert_eq!(real, r"C-0042\u{200b}");
        assert_eq!(spelled, r"C-0042\\u{200b}");
        assert_eq!(printable(r"a\nb \\ c\td"), r"a\\nb \\\ c\\td");
        assert_eq!(printable(r"CORP\alice"), r"CORP\alice");
        assert_eq!(printable("end\\"), "end\\");
        // A backslash before a real invisible character, against the escape spelled out.
        assert_ne!(printable("\\\u{200b}"), printable(r"\u{200b}"));
        assert_ne!(printable("\\\n"), printable(r"\n"));
    }
}
