//! The SSO API's dates: RFC 2822 as the seed writes them, where the offset's
//! `+` arrived as a space (`Sat, 04 Feb 2017 12:13:58  0100`). The `time`
//! crate does the calendar; this module only restores the sign, and writes
//! the seed's form back for the emulator.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::OffsetDateTime;

/// Parses an RFC 2822 date, accepting a bare `HHMM` offset as `+HHMM` (the
/// seed's `+` turned into a space on the way). `None` for anything else.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&normalise(text), &Rfc2822).ok()
}

/// `text` with an unsigned four-digit offset given its `+`; any other text
/// unchanged, for the parser to judge.
fn normalise(text: &str) -> String {
    let text = text.trim();
    match text.rsplit_once(|c: char| c.is_ascii_whitespace()) {
        Some((head, zone)) if zone.len() == 4 && zone.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{} +{zone}", head.trim_end())
        }
        _ => text.to_owned(),
    }
}

/// RFC 3339 with the offset the IdP wrote: `2017-02-04T12:13:58+01:00`.
pub fn to_rfc3339(date: OffsetDateTime) -> Option<String> {
    date.format(&Rfc3339).ok()
}

/// `date` as the seed writes it: RFC 2822 with a positive offset's `+` as a
/// space (`Sat, 04 Feb 2017 12:13:58  0100`); a negative offset keeps its `-`.
pub fn format_seed_style(date: OffsetDateTime) -> Option<String> {
    let text = date.format(&Rfc2822).ok()?;
    Some(match text.rsplit_once('+') {
        Some((head, zone)) => format!("{head} {zone}"),
        None => text,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    /// 2017-02-04T11:13:58Z, the seed's expiry.
    const SEED_EXPIRY_UTC: i64 = 1_486_206_838;

    #[test]
    fn the_seed_form_and_the_standard_forms_agree() {
        for text in [
            "Sat, 04 Feb 2017 12:13:58  0100",
            "Sat, 04 Feb 2017 12:13:58 +0100",
            "Sat, 04 Feb 2017 12:13:58 0100",
            "Sat, 04 Feb 2017 10:13:58 -0100",
            "Sat, 04 Feb 2017 11:13:58 +0000",
            "Sat, 04 Feb 2017 11:13:58 GMT",
            "04 Feb 2017 12:13:58 +0100",
            "  Sat, 04 Feb 2017 12:13:58  0100 ",
        ] {
            let d = parse(text).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!(d.unix_timestamp(), SEED_EXPIRY_UTC, "{text:?}");
        }
    }

    #[test]
    fn rfc3339_keeps_the_written_offset() {
        let at = |t| to_rfc3339(parse(t).unwrap()).unwrap();
        assert_eq!(
            at("Sat, 04 Feb 2017 12:13:58  0100"),
            "2017-02-04T12:13:58+01:00"
        );
        assert_eq!(
            at("Sat, 04 Feb 2017 06:43:58 -0430"),
            "2017-02-04T06:43:58-04:30"
        );
        assert_eq!(
            at("Sat, 04 Feb 2017 11:13:58 +0000"),
            "2017-02-04T11:13:58Z"
        );
    }

    #[test]
    fn garbage_and_impossible_dates_are_refused() {
        for text in [
            "",
            "tomorrow",
            "0100",
            "2017-02-04T12:13:58+01:00",
            "Sat, 04 Feb 2017",
            "Sat, 04 Feb 2017 12:13:58",
            "Sat, 04 Feb 2017 12:13:58 +01:00",
            "Sat, 04 Feb 2017 12:13:58 010",
            "Sat, 04 Feb 2017 12:13:58 +0100 extra",
            "Sat, 04 Foo 2017 12:13:58 +0100",
            "Sat, 31 Feb 2017 12:13:58 +0100",
            "Sat, 04 Feb 2017 24:00:00 +0100",
            "Sat, 04 Feb 2017 12:60:00 +0100",
            "Sat, 04 Feb 2017 12:13:58 ++100",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_seed_style_formatter_round_trips() {
        let expiry = datetime!(2017-02-04 11:13:58 UTC);
        assert_eq!(
            format_seed_style(expiry.to_offset(offset!(+1))).unwrap(),
            "Sat, 04 Feb 2017 12:13:58  0100"
        );
        assert_eq!(
            format_seed_style(expiry.to_offset(offset!(-4:30))).unwrap(),
            "Sat, 04 Feb 2017 06:43:58 -0430"
        );
        for off in [
            offset!(-12),
            offset!(-1),
            offset!(UTC),
            offset!(+1),
            offset!(+5:30),
        ] {
            let date = expiry.to_offset(off);
            let text = format_seed_style(date).unwrap();
            assert_eq!(parse(&text), Some(date), "{text}");
        }
    }
}
