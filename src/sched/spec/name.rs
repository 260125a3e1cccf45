//! Job names (part of [`super`]): length, and text that could make one name look like another.

use super::{SpecError, MAX_NAME_CHARS};

/// A job name's text, checked.
pub(super) fn name_str(s: &str) -> Result<String, SpecError> {
    if s.trim().is_empty() {
        return Err(SpecError::new(
            "name",
            "must not be empty or only whitespace",
        ));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(SpecError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(SpecError::new(
            "name",
            "must not contain control characters such as newlines or tabs",
        ));
    }
    check_name_text(s).map_err(|m| SpecError::new("name", m))?;
    Ok(s.to_string())
}

/// Most combining marks allowed in a row after one base character.
pub const MAX_COMBINING_RUN: usize = 2;

/// Refuses text that can make one name look like another in the dashboard or a terminal:
/// bidirectional controls, zero-width and other invisible format characters, line and
/// paragraph separators, and piles of combining marks (more than [`MAX_COMBINING_RUN`] in a
/// row, or one with nothing to combine with). The message names the character by code point.
pub fn check_name_text(s: &str) -> Result<(), String> {
    let mut run = 0;
    for (i, c) in s.chars().enumerate() {
        if let Some(what) = invisible(c) {
            return Err(format!(
                "must not contain {what} (U+{:04X} at character {}); they can make one name look like another",
                c as u32,
                i + 1
            ));
        }
        if is_combining(c) {
            run += 1;
            if i == 0 || run > MAX_COMBINING_RUN {
                return Err(format!(
                    "must not stack combining marks (U+{:04X} at character {}): at most {MAX_COMBINING_RUN} may follow a letter",
                    c as u32,
                    i + 1
                ));
            }
        } else {
            run = 0;
        }
    }
    Ok(())
}

/// What kind of invisible or direction-changing character `c` is, if it is one.
pub(super) fn invisible(c: char) -> Option<&'static str> {
    Some(match c as u32 {
        0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069 => {
            "a bidirectional control character"
        }
        0x200B..=0x200D | 0x2060 | 0xFEFF => "a zero-width character",
        0x2028 | 0x2029 => "a line or paragraph separator",
        // The rest of Unicode's format (Cf) characters, and fillers that render as blanks.
        0x00AD
        | 0x034F
        | 0x0600..=0x0605
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x115F
        | 0x1160
        | 0x17B4
        | 0x17B5
        | 0x180B..=0x180F
        | 0x2061..=0x2064
        | 0x206A..=0x206F
        | 0x3164
        | 0xFFA0
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF => "an invisible formatting character",
        _ => return None,
    })
}

/// Combining marks of the general-purpose combining blocks (the ones that stack on any
/// letter); script-specific vowel signs are left alone.
pub(super) fn is_combining(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}
