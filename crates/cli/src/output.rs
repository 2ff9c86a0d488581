//! How results reach the user: colors, `ApiCallRc` entries as the `linstor` client prints them,
//! and the exit code a run ends with.
//!
//! ```text
//! ERROR:
//! Description:
//!     Resource 'my_ssd_res' on node 'zulu' not found.
//! Cause:
//!     ...
//! Correction:
//!     ...
//! ```
//!
//! `Description:` appears only when a cause, correction or details follow; each text is indented
//! four spaces, line by line.

use ferrite_types::ApiCallRc;

/// ANSI colors, with the `linstor` client's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    DarkGreen,
    DarkPink,
    Red,
    Green,
    Yellow,
    Blue,
    Gray,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::DarkGreen => "\u{1b}[0;32m",
            Color::DarkPink => "\u{1b}[0;35m",
            Color::Gray => "\u{1b}[0;37m",
            Color::Red => "\u{1b}[1;31m",
            Color::Green => "\u{1b}[1;32m",
            Color::Yellow => "\u{1b}[1;33m",
            Color::Blue => "\u{1b}[1;34m",
        }
    }
}

const RESET: &str = "\u{1b}[0m";

/// How to draw: box-drawing characters or ASCII, colors or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub utf8: bool,
    pub color: bool,
}

impl Style {
    /// `text` in `color`, when colors are on.
    pub fn paint(&self, text: &str, color: Option<Color>) -> String {
        match color {
            Some(color) if self.color => format!("{}{text}{RESET}", color.code()),
            _ => text.to_string(),
        }
    }
}

/// Exit codes, as the `linstor` client uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A local failure that is none of the below (unreadable configuration, a reply that
    /// could not be printed).
    Failure = 1,
    /// Bad arguments.
    Usage = 2,
    /// A name given on the command line does not exist (e.g. `node interface list` of an
    /// unknown node).
    NotFound = 3,
    /// The controller answered with an error entry.
    Api = 10,
    /// No controller could be reached, or the connection broke.
    Connection = 20,
    /// A controller was reached but did not answer in time.
    Timeout = 21,
    /// A controller answered something that is not LINSTOR's JSON.
    UnexpectedReply = 22,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What kind of entry a `ret_code` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Success,
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn of(reply: &ApiCallRc) -> Severity {
        let code = reply.ret_code();
        if code.is_error() {
            Severity::Error
        } else if code.is_warning() {
            Severity::Warning
        } else if code.is_info() {
            Severity::Info
        } else {
            Severity::Success
        }
    }

    fn label(self) -> (&'static str, Color) {
        match self {
            Severity::Success => ("SUCCESS:", Color::Green),
            Severity::Info => ("INFO:", Color::Blue),
            Severity::Warning => ("WARNING:", Color::Yellow),
            Severity::Error => ("ERROR:", Color::Red),
        }
    }
}

/// The exit code a list of entries calls for: 10 when any is an error (or a warning, with
/// `--warn-as-error`).
pub fn exit_for(replies: &[ApiCallRc], warn_as_error: bool) -> Exit {
    let failed = replies.iter().any(|reply| match Severity::of(reply) {
        Severity::Error => true,
        Severity::Warning => warn_as_error,
        _ => false,
    });
    if failed { Exit::Api } else { Exit::Ok }
}

fn indented(out: &mut String, text: &str) {
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
}

/// One entry, as the `linstor` client prints it.
pub fn format_reply(reply: &ApiCallRc, style: &Style) -> String {
    let (label, color) = Severity::of(reply).label();
    let mut out = style.paint(label, Some(color));
    out.push('\n');
    fn present(text: &Option<String>) -> Option<&str> {
        text.as_deref().filter(|t| !t.is_empty())
    }
    let (cause, correction, details) = (
        present(&reply.cause),
        present(&reply.correction),
        present(&reply.details),
    );
    let has_message = !reply.message.is_empty();
    if has_message && (cause.is_some() || correction.is_some() || details.is_some()) {
        out.push_str("Description:\n");
    }
    if has_message {
        indented(&mut out, &reply.message);
    }
    for (heading, text) in [
        ("Cause:", cause),
        ("Correction:", correction),
        ("Details:", details),
    ] {
        if let Some(text) = text {
            out.push_str(heading);
            out.push('\n');
            indented(&mut out, text);
        }
    }
    if !reply.error_report_ids.is_empty() {
        out.push_str("Show reports:\n");
        indented(
            &mut out,
            &format!(
                "ferrite error-reports show {}",
                reply.error_report_ids.join(" ")
            ),
        );
    }
    out
}

/// Every entry, in order.
pub fn format_replies(replies: &[ApiCallRc], style: &Style) -> String {
    replies.iter().map(|r| format_reply(r, style)).collect()
}

#[cfg(test)]
mod tests {
    use ferrite_types::RetCode;
    use ferrite_types::api_call_rc::{code, mask};

    use super::*;

    const PLAIN: Style = Style {
        utf8: false,
        color: false,
    };

    #[test]
    fn success_prints_like_the_tutorial() {
        let reply = ApiCallRc::new(
            RetCode::success(code::CREATED).with_context(mask::CRT, mask::NODE),
            "New node 'alpha' registered.",
        );
        assert_eq!(
            format_reply(&reply, &PLAIN),
            "SUCCESS:\n    New node 'alpha' registered.\n"
        );
    }

    #[test]
    fn error_prints_like_the_tutorial() {
        let reply = ApiCallRc::new(
            RetCode::error(code::FAIL_NOT_FOUND_RSC),
            "Resource 'my_ssd_res' on node 'zulu' not found.",
        );
        assert_eq!(
            format_reply(&reply, &PLAIN),
            "ERROR:\n    Resource 'my_ssd_res' on node 'zulu' not found.\n"
        );
        assert_eq!(exit_for(&[reply], false), Exit::Api);
    }

    #[test]
    fn all_sections_in_linstor_order() {
        let reply = ApiCallRc::new(
            RetCode::warn(code::WARN_NOT_CONNECTED),
            "Line one\nline two",
        )
        .cause("Satellite offline.")
        .correction("Start it.")
        .details("More.\n")
        .error_report("6F0A-000001");
        assert_eq!(
            format_reply(&reply, &PLAIN),
            "WARNING:\nDescription:\n    Line one\n    line two\nCause:\n    Satellite offline.\n\
             Correction:\n    Start it.\nDetails:\n    More.\nShow reports:\n    \
             ferrite error-reports show 6F0A-000001\n"
        );
        let info = ApiCallRc::new(RetCode::info(code::INFO_NOOP), "Nothing to do.");
        assert_eq!(format_reply(&info, &PLAIN), "INFO:\n    Nothing to do.\n");
    }

    #[test]
    fn labels_are_colored_when_asked() {
        let reply = ApiCallRc::new(RetCode::error(1), "x");
        let colored = Style {
            utf8: false,
            color: true,
        };
        assert_eq!(
            format_reply(&reply, &colored),
            "\u{1b}[1;31mERROR:\u{1b}[0m\n    x\n"
        );
    }

    #[test]
    fn exit_codes() {
        let ok = ApiCallRc::new(RetCode::success(code::CREATED), "ok");
        let warn = ApiCallRc::new(RetCode::warn(code::WARN_NOT_CONNECTED), "w");
        let info = ApiCallRc::new(RetCode::info(code::INFO_NOOP), "i");
        assert_eq!(exit_for(&[], false), Exit::Ok);
        assert_eq!(exit_for(&[ok.clone(), info.clone()], false), Exit::Ok);
        assert_eq!(exit_for(std::slice::from_ref(&warn), false), Exit::Ok);
        assert_eq!(exit_for(&[warn], true), Exit::Api);
        assert_eq!(Exit::Api.code(), 10);
        assert_eq!(Exit::Connection.code(), 20);
        assert_eq!(Exit::Usage.code(), 2);
        assert_eq!(Exit::Timeout.code(), 21);
        assert_eq!(Exit::UnexpectedReply.code(), 22);
    }
}
